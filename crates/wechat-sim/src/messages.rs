//! Builds the messages the simulated phone receives, in the shape the web client gets them:
//! app-message XML HTML-escaped with `<br/>` for newlines (see the 2018 webwxsync capture in
//! `tests/fixtures/payments/`), and the envelope fields a real `AddMsgList` entry carries.

use serde_json::{Value, json};

use super::ids;
use wechat_web::money::Yuan;
use wechat_web::{Message, app_msg_type, msg_type};

/// Escapes an app message's XML as the web server does: `&`, `<`, `>` become entities and
/// every newline becomes a literal `<br/>` (inside CDATA too). Quotes stay as they are.
pub fn escape_app_content(xml: &str) -> String {
    xml.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace("\r\n", "<br/>")
        .replace('\n', "<br/>")
}

/// A fresh envelope with a new 19-digit id; sender and receiver are filled in at delivery,
/// since user names change with every login.
fn envelope(msg_type: u32, content: String, now: i64) -> Message {
    let id = ids::msg_id();
    Message {
        msg_id: id.to_string(),
        msg_type,
        content,
        status: 3,
        create_time: now,
        new_msg_id: id,
        ..Message::default()
    }
}

/// A plain text message. Text bodies are escaped like app messages on the web.
pub fn text(body: &str, now: i64) -> Message {
    envelope(msg_type::TEXT, escape_app_content(body), now)
}

/// The status-notify message (MsgType 51) the first webwxsync after init delivers; it lists
/// the recent chats.
pub fn status_notify(me: &str, chat_set: &str, now: i64) -> (Message, Vec<(&'static str, Value)>) {
    let xml = format!(
        "<msg>\n<op id='4'>\n<username>{chat_set}</username>\n<unreadchatlist>\n<chat>\n<username>filehelper</username>\n</chat>\n</unreadchatlist>\n<unreadfunctionlist>\n</unreadfunctionlist>\n</op>\n</msg>"
    );
    let mut msg = envelope(msg_type::STATUS_NOTIFY, escape_app_content(&xml), now);
    msg.to_user_name = "filehelper".to_string();
    msg.from_user_name = me.to_string();
    let extras = vec![
        ("StatusNotifyCode", json!(4)),
        ("StatusNotifyUserName", json!(chat_set)),
    ];
    (msg, extras)
}

/// Today's position of a collection, for the card's 汇总 line.
#[derive(Debug, Clone, Copy)]
pub struct RunningTotal {
    /// 1 for the first collection of the day.
    pub count: u64,
    /// Sum of today's collections including this one.
    pub total_fen: u64,
}

/// A 微信支付 collection notice (AppMsgType 5), laid out like the captured cards: title,
/// `des` lines, and the `template_detail` topline 收款金额 with the amount.
pub fn collection_notice(amount_fen: u64, today: RunningTotal, now: i64) -> Message {
    let amount = Yuan(amount_fen).to_string();
    let total = Yuan(today.total_fen).to_string();
    let nth = today.count;
    let openid = format!("{}=", ids::data_ticket());
    let url =
        format!("https://payapp.weixin.qq.com/payf2f/jumpf2fbill?timestamp={now}&openid={openid}");
    let title = format!("微信支付收款{amount}元");
    let des = format!(
        "收款金额￥{amount}\n汇总今日第{nth}笔收款，共计￥{total}\n备注收款成功，已存入零钱。点击可查看详情"
    );
    let xml = collection_xml(&title, &des, &amount, &total, nth, &url, amount_fen, now);
    let mut msg = envelope(msg_type::APP, escape_app_content(&xml), now);
    msg.app_msg_type = app_msg_type::LINK;
    msg.file_name = title;
    msg.url = url.replace('&', "&amp;");
    msg
}

#[allow(clippy::too_many_arguments)] // one template, filled in one place
fn collection_xml(
    title: &str,
    des: &str,
    amount: &str,
    total: &str,
    nth: u64,
    url: &str,
    amount_fen: u64,
    now: i64,
) -> String {
    let trade_no = ids::data_ticket();
    format!(
        "<msg> <appmsg appid=\"\" sdkver=\"0\"> \t<title><![CDATA[{title}]]></title> \t<des><![CDATA[{des}]]></des> \t<action></action> \t<type>5</type> \t<showtype>1</showtype>     <soundtype>1</soundtype> \t<content><![CDATA[]]></content> \t<contentattr>0</contentattr> \t<url><![CDATA[{url}]]></url> \t<lowurl><![CDATA[]]></lowurl> \t<appattach> \t\t<totallen>0</totallen> \t\t<attachid></attachid> \t\t<fileext></fileext> \t</appattach> \t<extinfo></extinfo> \t<sourceusername></sourceusername> \t<sourcedisplayname><![CDATA[]]></sourcedisplayname> \t<mmreader> \t\t<category type=\"0\" count=\"1\"> \t\t\t<name><![CDATA[微信支付]]></name> \t\t\t<topnew> \t\t\t\t<cover><![CDATA[]]></cover> \t\t\t\t<width>0</width> \t\t\t\t<height>0</height> \t\t\t\t<digest><![CDATA[{des}]]></digest> \t\t\t</topnew> \t\t\t\t<item> \t<itemshowtype>4</itemshowtype> \t<title><![CDATA[收款到账通知]]></title> \t<url><![CDATA[{url}]]></url> \t<pub_time>{now}</pub_time> \t<digest><![CDATA[{des}]]></digest> \t<fileid>0</fileid> \t<sources> \t<source> \t<name><![CDATA[微信支付]]></name> \t</source> \t</sources> \t<template_op_type>1</template_op_type> \t<weapp_username><![CDATA[gh_fac0ad4c321d@app]]></weapp_username> \t<weapp_path><![CDATA[pages/index/index.html]]></weapp_path> \t</item> \t\t</category> \t\t<publisher> \t\t\t<username><![CDATA[wxzhifu]]></username> \t\t\t<nickname><![CDATA[微信支付]]></nickname> \t\t</publisher> \t\t<template_header><title><![CDATA[收款到账通知]]></title>\n<title_color><![CDATA[]]></title_color>\n<pub_time>{now}</pub_time>\n<first_data><![CDATA[]]></first_data>\n<first_color><![CDATA[]]></first_color>\n</template_header> \t\t<template_detail><template_show_type>1</template_show_type>\n<text_content>\n<cover><![CDATA[]]></cover>\n<text><![CDATA[]]></text>\n<color><![CDATA[]]></color>\n</text_content>\n<line_content>\n<topline>\n<key>\n<word><![CDATA[收款金额]]></word>\n<color><![CDATA[#888888]]></color>\n</key>\n<value>\n<word><![CDATA[￥{amount}]]></word>\n<color><![CDATA[#000000]]></color>\n</value>\n</topline>\n<lines>\n<line>\n<key>\n<word><![CDATA[汇总]]></word>\n<color><![CDATA[#888888]]></color>\n</key>\n<value>\n<word><![CDATA[今日第{nth}笔收款，共计￥{total}]]></word>\n<color><![CDATA[#000000]]></color>\n</value>\n</line>\n<line>\n<key>\n<word><![CDATA[备注]]></word>\n<color><![CDATA[#888888]]></color>\n</key>\n<value>\n<word><![CDATA[收款成功，已存入零钱。点击可查看详情]]></word>\n<color><![CDATA[#000000]]></color>\n</value>\n</line>\n</lines>\n</line_content>\n<opitems>\n<opitem>\n<word><![CDATA[收款小账本]]></word>\n<url><![CDATA[]]></url>\n<op_type>1</op_type>\n</opitem>\n</opitems>\n</template_detail> \t    <forbid_forward>0</forbid_forward> \t</mmreader> \t<thumburl><![CDATA[]]></thumburl> \t     <template_id><![CDATA[ey45ZWkUmYUBk_fMgxBLvyaFqVop1rmoWLFd62OXGiU]]></template_id>                          \t<ext_pay_info><pay_fee><![CDATA[{amount_fen}]]></pay_fee>\n<pay_feetype><![CDATA[1]]></pay_feetype>\n<pay_outtradeno><![CDATA[{trade_no}]]></pay_outtradeno>\n<pay_type><![CDATA[wx_f2f]]></pay_type>\n</ext_pay_info> </appmsg><fromusername><![CDATA[gh_3dfda90e39d6]]></fromusername><appinfo><version>0</version><appname><![CDATA[微信支付]]></appname><isforceupdate>1</isforceupdate></appinfo></msg>"
    )
}

/// A 微信收款助手 clerk copy of the shop owner's collection (`[店员消息]收款到账…元`), laid
/// out like `cashier-assistant-clerk-2019.xml` with the web's `<br/>` separators.
pub fn clerk_notice(amount_fen: u64, today: RunningTotal, now: i64) -> Message {
    let amount = Yuan(amount_fen).to_string();
    let total = Yuan(today.total_fen).to_string();
    let nth = today.count;
    let title = format!("[店员消息]收款到账{amount}元");
    let des = format!(
        "收款金额￥{amount}\n汇总今日第{nth}笔收款, 共计￥{total}\n说明已存入店长(**鑫)的零钱"
    );
    let xml = format!(
        "<msg> <appmsg appid=\"\" sdkver=\"0\">     <title><![CDATA[{title}]]></title>     <des><![CDATA[{des}]]></des>         <action></action>       <type>5</type>  <showtype>1</showtype>     <soundtype>0</soundtype>     <content><![CDATA[]]></content>         <contentattr>0</contentattr>    <url><![CDATA[]]></url>         <lowurl><![CDATA[]]></lowurl>   <extinfo></extinfo>     <mmreader>              <category type=\"0\" count=\"1\">                   <name><![CDATA[微信收款助手]]></name>                   <topnew>                                <cover><![CDATA[]]></cover>                             <width>0</width>                                <height>0</height>                              <digest><![CDATA[{des}]]></digest>                      </topnew>                               <item>  <itemshowtype>4</itemshowtype>  <title><![CDATA[{title}]]></title>     <pub_time>{now}</pub_time>      <digest><![CDATA[{des}]]></digest>      <fileid>0</fileid>      <sources>       <source>        <name><![CDATA[微信收款助手]]></name>   </source>       </sources>      </item>                 </category>             <publisher>                     <username><![CDATA[gh_f0a92aa7146c]]></username>                        <nickname><![CDATA[微信收款助手]]></nickname>           </publisher>            <template_header><title><![CDATA[收款到账通知]]></title><pub_time>{now}</pub_time><hide_title_and_time>1</hide_title_and_time><pay_style>1</pay_style></template_header>              <template_detail><template_show_type>1</template_show_type><line_content><topline><key><word><![CDATA[收款金额]]></word><color><![CDATA[#888888]]></color><hide_dash_line>1</hide_dash_line></key><value><word><![CDATA[￥{amount}]]></word><color><![CDATA[#000000]]></color><small_text_count>1</small_text_count></value></topline><lines><line><key><word><![CDATA[汇总]]></word><color><![CDATA[#888888]]></color></key><value><word><![CDATA[今日第{nth}笔收款, 共计￥{total}]]></word><color><![CDATA[#000000]]></color></value></line><line><key><word><![CDATA[说明]]></word><color><![CDATA[#888888]]></color></key><value><word><![CDATA[已存入店长(**鑫)的零钱]]></word><color><![CDATA[#FA962A]]></color></value></line></lines></line_content></template_detail>          <forbid_forward>0</forbid_forward>  </mmreader>     <thumburl><![CDATA[]]></thumburl>            <template_id><![CDATA[hhBEwxiQAAY8HBHor5osXOl4zvANfBpjRKy_EkV__pg]]></template_id>                                  </appmsg><fromusername><![CDATA[gh_f0a92aa7146c]]></fromusername><appinfo><version>0</version><appname><![CDATA[微信收款助手]]></appname><isforceupdate>1</isforceupdate></appinfo></msg>"
    );
    let mut msg = envelope(msg_type::APP, escape_app_content(&xml), now);
    msg.app_msg_type = app_msg_type::LINK;
    msg.file_name = title;
    msg
}

/// A transfer (AppMsgType 2000) as the payer's message: paysubtype 1, amount in `feedesc`.
pub fn transfer(amount_fen: u64, now: i64) -> Message {
    let amount = Yuan(amount_fen).to_string();
    let upgrade = "https://support.weixin.qq.com/cgi-bin/mmsupport-bin/readtemplate?t=page/common_page__upgrade&text=text001&btn_text=btn_text_0";
    let xml = format!(
        "<msg><appmsg appid=\"\" sdkver=\"\"><title><![CDATA[微信转账]]></title><des><![CDATA[收到转账{amount}元。如需收钱，请点此升级至最新版本]]></des><action></action><type>2000</type><content><![CDATA[]]></content><url><![CDATA[{upgrade}]]></url><thumburl><![CDATA[{upgrade}]]></thumburl><lowurl></lowurl><extinfo></extinfo><wcpayinfo><paysubtype>1</paysubtype><feedesc><![CDATA[￥{amount}]]></feedesc><transcationid><![CDATA[{tx}]]></transcationid><transferid><![CDATA[{tr}]]></transferid><invalidtime><![CDATA[{invalid}]]></invalidtime><begintransfertime><![CDATA[{now}]]></begintransfertime><effectivedate><![CDATA[1]]></effectivedate><pay_memo><![CDATA[]]></pay_memo></wcpayinfo></appmsg></msg>",
        tx = ids::digits(36),
        tr = ids::digits(31),
        invalid = now + 86_400,
    );
    let mut msg = envelope(msg_type::APP, escape_app_content(&xml), now);
    msg.app_msg_type = app_msg_type::TRANSFER;
    msg.file_name = "微信转账".to_string();
    msg.url = upgrade.replace('&', "&amp;");
    msg
}

/// The envelope fields a real `AddMsgList` entry has beyond [`Message`]'s, so the JSON the
/// client decodes looks like a capture (see `web-webwxsync-wxpay-2018.json`).
pub fn message_json(msg: &Message, extras: &[(&'static str, Value)]) -> Value {
    let mut value = serde_json::to_value(msg).unwrap_or_else(|_| json!({}));
    let defaults = [
        ("ImgStatus", json!(1)),
        ("VoiceLength", json!(0)),
        ("PlayLength", json!(0)),
        ("FileSize", json!("0")),
        ("MediaId", json!("")),
        ("StatusNotifyCode", json!(0)),
        ("StatusNotifyUserName", json!("")),
        (
            "RecommendInfo",
            json!({"UserName": "", "NickName": "", "QQNum": 0, "Province": "", "City": "",
                   "Content": "", "Signature": "", "Alias": "", "Scene": 0, "VerifyFlag": 0,
                   "AttrStatus": 0, "Sex": 0, "Ticket": "", "OpCode": 0}),
        ),
        ("ForwardFlag", json!(0)),
        ("AppInfo", json!({"AppID": "", "Type": 0})),
        ("HasProductId", json!(0)),
        ("Ticket", json!("")),
        ("ImgHeight", json!(0)),
        ("ImgWidth", json!(0)),
        ("SubMsgType", json!(0)),
        ("OriContent", json!("")),
        ("EncryFileName", json!(ids::encry_file_name(&msg.file_name))),
    ];
    if let Value::Object(map) = &mut value {
        for (key, v) in defaults.into_iter().chain(extras.iter().cloned()) {
            map.insert(key.to_string(), v);
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_notice_is_escaped_like_the_capture() {
        let msg = collection_notice(
            1234,
            RunningTotal {
                count: 2,
                total_fen: 1334,
            },
            1_700_000_000,
        );
        assert_eq!(msg.msg_type, 49);
        assert_eq!(msg.app_msg_type, 5);
        assert_eq!(msg.file_name, "微信支付收款12.34元");
        assert!(msg.content.starts_with("&lt;msg&gt;"));
        assert!(!msg.content.contains('\n'));
        assert!(
            msg.content
                .contains("收款金额￥12.34<br/>汇总今日第2笔收款，共计￥13.34<br/>")
        );
        assert!(
            msg.content
                .contains("&lt;word&gt;&lt;![CDATA[￥12.34]]&gt;&lt;/word&gt;")
        );
        assert!(msg.url.contains("&amp;openid="));
        assert_eq!(msg.msg_id.len(), 19);
        assert_eq!(msg.msg_id, msg.new_msg_id.to_string());
    }

    #[test]
    fn clerk_notice_names_the_amount() {
        let msg = clerk_notice(
            1,
            RunningTotal {
                count: 2,
                total_fen: 2,
            },
            1_555_054_161,
        );
        assert_eq!(msg.file_name, "[店员消息]收款到账0.01元");
        assert!(
            msg.content
                .contains("收款金额￥0.01<br/>汇总今日第2笔收款, 共计￥0.02<br/>")
        );
    }

    #[test]
    fn transfer_carries_feedesc() {
        let msg = transfer(10, 1_700_000_000);
        assert_eq!(msg.app_msg_type, 2000);
        assert!(
            msg.content
                .contains("&lt;paysubtype&gt;1&lt;/paysubtype&gt;")
        );
        assert!(
            msg.content
                .contains("&lt;feedesc&gt;&lt;![CDATA[￥0.10]]&gt;")
        );
    }

    #[test]
    fn json_has_capture_fields() {
        let v = message_json(&text("a\nb<c>", 1), &[]);
        assert_eq!(v["Content"], "a<br/>b&lt;c&gt;");
        assert_eq!(v["MsgType"], 1);
        assert!(v["RecommendInfo"].is_object());
        assert!(v["NewMsgId"].is_u64());
    }
}
