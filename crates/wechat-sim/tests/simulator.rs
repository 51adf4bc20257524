//! The WeChat simulator driven by hand with plain reqwest, as a browser would drive WeChat:
//! proves the happy path works and that each check refuses what WeChat refuses, so the
//! client's tests against the simulator mean something.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wechat_sim::{Endpoint, Fault, SimConfig, Simulator, Verdict, WXPAY};
use wechat_web::{self as protocol, LoginPoll, SyncKey};

const CGI: &str = "/cgi-bin/mmwebwx-bin";
const DEVICE: &str = "e123456789012345";

/// A hand-driven browser: keeps cookies by name (the simulator sets WeChat's real Domains,
/// which a cookie jar would refuse for 127.0.0.1) and the session's keys.
#[derive(Clone)]
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: BTreeMap<String, String>,
    uin: String,
    sid: String,
    skey: String,
    /// As the XML carries it (encoded once).
    pass_ticket: String,
    me: String,
    sync_key: SyncKey,
    check_key: SyncKey,
}

struct Answer {
    status: u16,
    content_type: String,
    set_cookies: Vec<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn ret(&self) -> i64 {
        self.json()["BaseResponse"]["Ret"].as_i64().unwrap_or(-999)
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Browser {
    fn new(sim: &Simulator) -> Browser {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            http,
            base: sim.base_url(),
            cookies: BTreeMap::new(),
            uin: String::new(),
            sid: String::new(),
            skey: String::new(),
            pass_ticket: String::new(),
            me: String::new(),
            sync_key: SyncKey::default(),
            check_key: SyncKey::default(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> reqwest::Result<Answer> {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = if cookie.is_empty() {
            req
        } else {
            req.header("Cookie", cookie)
        };
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let header = |name| {
            resp.headers()
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let content_type = header(reqwest::header::CONTENT_TYPE).join("");
        let set_cookies = header(reqwest::header::SET_COOKIE);
        let body = String::from_utf8(resp.bytes().await?.to_vec()).unwrap();
        Ok(Answer {
            status,
            content_type,
            set_cookies,
            body,
        })
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, body: String) -> Answer {
        self.send(self.http.post(format!("{}{path}", self.base)).body(body))
            .await
            .unwrap()
    }

    fn base_request(&self) -> Value {
        json!({"Uin": self.uin.parse::<u64>().unwrap_or(0), "Sid": self.sid, "Skey": self.skey, "DeviceID": DEVICE})
    }

    /// `pass_ticket` as the browser sends it: the XML's value encoded once more.
    fn pt(&self) -> String {
        enc(&self.pass_ticket)
    }

    async fn jslogin(&self) -> String {
        let a = self
            .get(&format!(
                "/jslogin?appid={}&redirect_uri={}&fun=new&lang=zh_CN&_=1",
                protocol::APP_ID,
                enc("https://wx.qq.com/cgi-bin/mmwebwx-bin/webwxnewloginpage")
            ))
            .await;
        protocol::parse_qrlogin(&a.body).unwrap()
    }

    async fn poll(&self, uuid: &str, tip: u8) -> (LoginPoll, String) {
        let a = self
            .get(&format!(
                "{CGI}/login?loginicon=true&uuid={uuid}&tip={tip}&r=-1&_=2"
            ))
            .await;
        (protocol::parse_login_poll(&a.body).unwrap(), a.body)
    }

    /// Follows the redirect (mapped onto the simulator) and keeps cookies and keys.
    async fn exchange_ticket(&mut self, redirect: &str) -> Answer {
        let url = url::Url::parse(redirect).unwrap();
        let a = self
            .get(&format!(
                "{}?{}&fun=new&version=v2",
                url.path(),
                url.query().unwrap_or("")
            ))
            .await;
        for c in &a.set_cookies {
            if let Some((k, v)) = c.split(';').next().and_then(|kv| kv.split_once('=')) {
                self.cookies.insert(k.to_string(), v.to_string());
            }
        }
        if let Ok(t) = protocol::parse_ticket(&a.body) {
            self.uin = t.wxuin;
            self.sid = t.wxsid;
            self.skey = t.skey;
            self.pass_ticket = t.pass_ticket;
        }
        a
    }

    /// jslogin → scan → confirm → ticket.
    async fn login(&mut self, sim: &Simulator) {
        let uuid = self.jslogin().await;
        sim.scan();
        sim.confirm();
        let (poll, _) = self.poll(&uuid, 1).await;
        let LoginPoll::Confirmed { redirect_uri } = poll else {
            panic!("not confirmed: {poll:?}")
        };
        let a = self.exchange_ticket(&redirect_uri).await;
        assert!(a.body.contains("<ret>0</ret>"), "{}", a.body);
    }

    async fn init(&mut self) -> Answer {
        let mut br = self.base_request();
        br["Uin"] = json!(self.uin); // as the browser does in webwxinit: a string
        let a = self
            .post(
                &format!("{CGI}/webwxinit?r=-1&lang=zh_CN&pass_ticket={}", self.pt()),
                json!({"BaseRequest": br}).to_string(),
            )
            .await;
        if a.ret() == 0 {
            let v = a.json();
            self.skey = v["SKey"].as_str().unwrap().to_string();
            self.me = v["User"]["UserName"].as_str().unwrap().to_string();
            self.sync_key = serde_json::from_value(v["SyncKey"].clone()).unwrap();
            self.check_key = self.sync_key.clone();
        }
        a
    }

    async fn logged_in(sim: &Simulator) -> Browser {
        let mut b = Browser::new(sim);
        b.login(sim).await;
        assert_eq!(b.init().await.ret(), 0);
        b
    }

    fn sync_check_path(&self, synckey: &str) -> String {
        format!(
            "{CGI}/synccheck?r=1&skey={}&sid={}&uin={}&deviceid={DEVICE}&synckey={}&_=3",
            enc(&self.skey),
            enc(&self.sid),
            self.uin,
            enc(synckey)
        )
    }

    async fn sync_check(&self) -> protocol::SyncCheck {
        let a = self
            .get(&self.sync_check_path(&self.check_key.to_query()))
            .await;
        protocol::parse_synccheck(&a.body).unwrap()
    }

    async fn sync_with(&self, key: &SyncKey) -> Answer {
        self.post(
            &format!(
                "{CGI}/webwxsync?sid={}&skey={}&lang=zh_CN&pass_ticket={}",
                enc(&self.sid),
                enc(&self.skey),
                self.pt()
            ),
            json!({"BaseRequest": self.base_request(), "SyncKey": key, "rr": -12345}).to_string(),
        )
        .await
    }

    /// webwxsync with the current key; adopts the new keys.
    async fn sync(&mut self) -> Value {
        let a = self.sync_with(&self.sync_key.clone()).await;
        assert_eq!(a.ret(), 0, "{}", a.body);
        let v = a.json();
        self.sync_key = serde_json::from_value(v["SyncKey"].clone()).unwrap();
        self.check_key = serde_json::from_value(v["SyncCheckKey"].clone()).unwrap();
        v
    }

    async fn get_contact(&self, seq: u64) -> Answer {
        self.get(&format!(
            "{CGI}/webwxgetcontact?lang=zh_CN&pass_ticket={}&r=1&seq={seq}&skey={}",
            self.pt(),
            enc(&self.skey)
        ))
        .await
    }

    async fn batch_get(&self, names: &[&str]) -> Answer {
        let list: Vec<Value> = names
            .iter()
            .map(|n| json!({"UserName": n, "EncryChatRoomId": ""}))
            .collect();
        self.post(
            &format!(
                "{CGI}/webwxbatchgetcontact?type=ex&r=1&lang=zh_CN&pass_ticket={}",
                self.pt()
            ),
            json!({"BaseRequest": self.base_request(), "Count": list.len(), "List": list})
                .to_string(),
        )
        .await
    }
}

fn config() -> SimConfig {
    SimConfig {
        contact_page_size: 5,
        ..SimConfig::for_tests()
    }
}

async fn sim() -> Simulator {
    Simulator::start(config()).await.unwrap()
}

fn msg_ids(sync: &Value) -> Vec<String> {
    sync["AddMsgList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["MsgId"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn happy_path_from_qr_to_a_spoken_payment() {
    let sim = sim().await;
    let mut b = Browser::new(&sim);

    let uuid = b.jslogin().await;
    assert_eq!(uuid.len(), 12);
    assert!(uuid.ends_with("=="));

    let started = Instant::now();
    assert_eq!(b.poll(&uuid, 1).await.0, LoginPoll::Waiting);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "the login poll must hold"
    );

    sim.scan();
    let (poll, body) = b.poll(&uuid, 1).await;
    assert_eq!(poll, LoginPoll::Scanned);
    assert!(body.contains("window.userAvatar = 'data:img/jpg;base64,"));

    sim.confirm();
    let (poll, body) = b.poll(&uuid, 0).await;
    let LoginPoll::Confirmed { redirect_uri } = poll else {
        panic!("{body}")
    };
    assert!(body.starts_with("window.code=200;\nwindow.redirect_uri=\"https://wx2.qq.com/cgi-bin/mmwebwx-bin/webwxnewloginpage?ticket="));
    assert!(redirect_uri.contains("@qrticket_0&uuid="));

    let ticket = b.exchange_ticket(&redirect_uri).await;
    assert_eq!(ticket.content_type, "text/plain");
    assert!(
        ticket
            .body
            .starts_with("<error><ret>0</ret><message></message><skey>@crypt_")
    );
    assert!(
        ticket
            .body
            .ends_with("<isgrayscale>1</isgrayscale></error>")
    );
    assert!(b.pass_ticket.contains("%2F") && b.pass_ticket.ends_with("%3D"));
    let names: Vec<&str> = ticket
        .set_cookies
        .iter()
        .filter_map(|c| c.split('=').next())
        .collect();
    assert_eq!(
        names,
        [
            "wxuin",
            "wxsid",
            "wxloadtime",
            "mm_lang",
            "webwx_data_ticket",
            "webwxuvid",
            "webwx_auth_ticket"
        ]
    );
    let data_ticket = ticket
        .set_cookies
        .iter()
        .find(|c| c.starts_with("webwx_data_ticket="))
        .unwrap();
    assert!(
        data_ticket.contains("; Domain=.qq.com; Path=/; Expires="),
        "{data_ticket}"
    );
    assert!(data_ticket.ends_with(" GMT"));
    let session = sim.session().unwrap();
    assert_eq!(session.sid, b.sid);

    let ticket_skey = b.skey.clone();
    let init = b.init().await;
    assert_eq!(init.content_type, "text/plain");
    assert_eq!(init.ret(), 0);
    assert_ne!(b.skey, ticket_skey, "webwxinit hands out a new SKey");
    let keys: Vec<u64> = b.sync_key.list.iter().map(|kv| kv.key).collect();
    assert_eq!(keys, [1, 2, 3, 1000]);
    assert_eq!(b.me.len(), 65);
    assert_eq!(sim.session().unwrap().user_name, b.me);

    let notify = b
        .post(
            &format!("{CGI}/webwxstatusnotify?lang=zh_CN&pass_ticket={}", b.pt()),
            json!({"BaseRequest": b.base_request(), "Code": 3, "FromUserName": b.me, "ToUserName": b.me, "ClientMsgId": 1}).to_string(),
        )
        .await;
    assert_eq!(notify.ret(), 0, "{}", notify.body);

    // Contacts come in pages of 5; Seq 0 marks the last.
    let mut seq = 0;
    let mut contacts = Vec::new();
    let mut pages = 0;
    loop {
        let page = b.get_contact(seq).await.json();
        assert_eq!(page["BaseResponse"]["Ret"], 0);
        pages += 1;
        contacts.extend(page["MemberList"].as_array().unwrap().iter().cloned());
        seq = page["Seq"].as_u64().unwrap();
        if seq == 0 {
            break;
        }
    }
    assert_eq!(pages, 6, "27 contacts in pages of 5");
    assert_eq!(contacts.len(), 27);
    let wxpay = contacts.iter().find(|c| c["NickName"] == WXPAY).unwrap();
    assert_eq!(wxpay["VerifyFlag"], 24);
    assert_eq!(wxpay["UserName"].as_str().unwrap().len(), 33);
    assert!(
        contacts
            .iter()
            .any(|c| c["NickName"] == "微信收款助手" && c["VerifyFlag"] == 24)
    );
    assert!(
        contacts
            .iter()
            .any(|c| c["UserName"].as_str().unwrap().starts_with("@@"))
    );

    // The status-notify message waits; the first sync delivers it with the long key list.
    assert_eq!(b.sync_check().await.selector, 2);
    let first = b.sync().await;
    assert_eq!(first["AddMsgList"][0]["MsgType"], 51);
    assert!(
        (7..=10).contains(&b.sync_key.list.len()),
        "{:?}",
        b.sync_key
    );

    // Nothing pending: synccheck holds, then says selector 0.
    let started = Instant::now();
    let idle = b.sync_check().await;
    assert_eq!((idle.retcode, idle.selector), (0, 0));
    assert!(started.elapsed() >= Duration::from_millis(150));

    // A payment wakes a held synccheck.
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.sync_check().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = sim.pay(1234);
    let woke = waiter.await.unwrap();
    assert_eq!((woke.retcode, woke.selector), (0, 2));
    let synced = b.sync().await;
    let msg = &synced["AddMsgList"][0];
    assert_eq!(msg["MsgId"], id.as_str());
    assert_eq!(id.len(), 19);
    assert_eq!(msg["NewMsgId"].as_u64().unwrap().to_string(), id);
    assert_eq!(msg["MsgType"], 49);
    assert_eq!(msg["AppMsgType"], 5);
    assert_eq!(msg["FromUserName"], wxpay["UserName"]);
    assert_eq!(msg["ToUserName"], b.me.as_str());
    let content = msg["Content"].as_str().unwrap();
    assert!(content.starts_with("&lt;msg&gt;"));
    assert!(content.contains("收款金额￥12.34<br/>汇总今日第1笔收款，共计￥12.34"));
    assert_eq!(synced["ContinueFlag"], 0);
    assert_eq!(synced["SKey"], b.skey.as_str());
    sim.shutdown().await;
}

#[tokio::test]
async fn running_total_counts_todays_collections() {
    let sim = sim().await;
    let mut b = Browser::logged_in(&sim).await;
    b.sync().await;
    sim.pay(100);
    sim.pay(250);
    let v = b.sync().await;
    let second = v["AddMsgList"][1]["Content"].as_str().unwrap();
    assert!(second.contains("今日第2笔收款，共计￥3.50"), "{second}");
}

#[tokio::test]
async fn missing_cookie_gets_ret_1100_and_an_empty_body() {
    let sim = sim().await;
    let mut b = Browser::new(&sim);
    b.login(&sim).await;
    let mut without = b.clone();
    without.cookies.remove("webwx_data_ticket");
    let a = without.init().await;
    assert_eq!(a.ret(), 1100);
    let v = a.json();
    assert_eq!(v["User"]["UserName"], "");
    assert_eq!(v["SyncKey"]["Count"], 0);
    assert_eq!(v["ContactList"], json!([]));
    // The real cookies still work, and synccheck without cookies says 1102.
    assert_eq!(b.init().await.ret(), 0);
    let mut bare = b.clone();
    bare.cookies.clear();
    assert_eq!(bare.sync_check().await.retcode, 1102);
    assert_eq!(b.sync_check().await.retcode, 0);
    let last = sim.requests_to(Endpoint::SyncCheck);
    assert_eq!(last[0].verdict, Verdict::Refused(1102));
}

#[tokio::test]
async fn the_skey_webwxinit_replaced_is_refused() {
    let sim = sim().await;
    let mut b = Browser::new(&sim);
    b.login(&sim).await;
    let ticket_skey = b.skey.clone();
    assert_eq!(b.init().await.ret(), 0);
    let mut stale = b.clone();
    stale.skey = ticket_skey;
    assert_eq!(stale.sync_with(&b.sync_key).await.ret(), 1101);
    assert_eq!(stale.get_contact(0).await.ret(), 1101);
    assert_eq!(stale.sync_check().await.retcode, 1101);
    assert_eq!(b.sync_with(&b.sync_key).await.ret(), 0);
}

#[tokio::test]
async fn pass_ticket_must_be_the_xml_value_encoded_once_more() {
    let sim = sim().await;
    let mut b = Browser::new(&sim);
    b.login(&sim).await;
    // Sent as the XML has it (not encoded again): the server decodes it to `/` and `=`.
    let raw = b
        .post(
            &format!(
                "{CGI}/webwxinit?r=-1&lang=zh_CN&pass_ticket={}",
                b.pass_ticket
            ),
            json!({"BaseRequest": b.base_request()}).to_string(),
        )
        .await;
    assert_eq!(raw.ret(), 1100);
    // A pass_ticket from an earlier login is stale after a new one.
    let old = b.pass_ticket.clone();
    b.login(&sim).await;
    let mut stale = b.clone();
    stale.pass_ticket = old;
    assert_eq!(stale.init().await.ret(), 1100);
    assert_eq!(b.init().await.ret(), 0);
}

#[tokio::test]
async fn base_request_uin_sid_and_device_id_are_checked() {
    let sim = sim().await;
    let mut b = Browser::new(&sim);
    b.login(&sim).await;
    let post_init = |br: Value| {
        let b = b.clone();
        async move {
            b.post(
                &format!("{CGI}/webwxinit?r=-1&lang=zh_CN&pass_ticket={}", b.pt()),
                json!({"BaseRequest": br}).to_string(),
            )
            .await
            .ret()
        }
    };
    let mut br = b.base_request();
    br["DeviceID"] = json!("e12345");
    assert_eq!(post_init(br).await, 1100);
    let mut br = b.base_request();
    br["Uin"] = json!(1);
    assert_eq!(post_init(br).await, 1100);
    let mut br = b.base_request();
    br["Sid"] = json!("nope");
    assert_eq!(post_init(br).await, 1100);
    assert_eq!(post_init(json!({})).await, 1100);
    // Uin as a number is as good as the string form.
    assert_eq!(post_init(b.base_request()).await, 0);
}

#[tokio::test]
async fn empty_post_body_gets_an_empty_200() {
    let sim = sim().await;
    let mut b = Browser::new(&sim);
    b.login(&sim).await;
    let a = b
        .post(
            &format!("{CGI}/webwxinit?r=-1&lang=zh_CN&pass_ticket={}", b.pt()),
            String::new(),
        )
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body, "");
    assert_eq!(
        sim.requests_to(Endpoint::Init)[0].verdict,
        Verdict::EmptyBody
    );
    assert_eq!(b.init().await.ret(), 0);
}

#[tokio::test]
async fn a_stale_sync_key_redelivers_the_same_messages() {
    let sim = sim().await;
    let mut b = Browser::logged_in(&sim).await;
    b.sync().await;
    let before = b.sync_key.clone();
    let ids = [sim.pay(1), sim.transfer("张伟", 10)];
    let first = b.sync().await;
    assert_eq!(msg_ids(&first), ids);
    let again = b.sync_with(&before).await.json();
    assert_eq!(
        msg_ids(&again),
        ids,
        "a stale SyncKey gets the same messages"
    );
    // The current key has nothing new.
    assert_eq!(msg_ids(&b.sync().await), Vec::<String>::new());
}

#[tokio::test]
async fn redeliver_puts_a_message_on_the_list_again() {
    let sim = sim().await;
    let mut b = Browser::logged_in(&sim).await;
    b.sync().await;
    let id = sim.pay(500);
    assert_eq!(msg_ids(&b.sync().await), std::slice::from_ref(&id));
    assert!(sim.redeliver(&id));
    assert_eq!(b.sync_check().await.selector, 2);
    assert_eq!(msg_ids(&b.sync().await), [id]);
    assert!(!sim.redeliver("1234567890123456789"));
}

#[tokio::test]
async fn a_burst_bigger_than_a_page_sets_continue_flag() {
    let sim = Simulator::start(SimConfig {
        sync_page_size: 3,
        ..SimConfig::for_tests()
    })
    .await
    .unwrap();
    let mut b = Browser::logged_in(&sim).await;
    b.sync().await;
    let ids: Vec<String> = (1..=7).map(|i| sim.pay(i)).collect();
    let mut got = Vec::new();
    let mut flags = Vec::new();
    for _ in 0..3 {
        let v = b.sync().await;
        flags.push(v["ContinueFlag"].as_u64().unwrap());
        got.extend(msg_ids(&v));
    }
    assert_eq!(flags, [1, 1, 0]);
    assert_eq!(got, ids);
}

#[tokio::test]
async fn an_unknown_sync_key_is_refused() {
    let sim = sim().await;
    let mut b = Browser::logged_in(&sim).await;
    b.check_key = SyncKey::new(vec![protocol::KeyVal { key: 1, val: 42 }]);
    assert_eq!(b.sync_check().await.retcode, 1101);
    assert_eq!(b.sync_with(&b.check_key).await.ret(), 1101);
}

#[tokio::test]
async fn an_expired_qr_answers_400() {
    let sim = sim().await;
    let b = Browser::new(&sim);
    let uuid = b.jslogin().await;
    sim.expire_qr();
    assert_eq!(b.poll(&uuid, 1).await.0, LoginPoll::Expired);
    assert_eq!(b.poll("nosuchuuid==", 1).await.0, LoginPoll::Expired);
    let bad = b.get("/jslogin?appid=wx0000&fun=new&lang=zh_CN&_=1").await;
    assert!(protocol::parse_qrlogin(&bad.body).is_err(), "{}", bad.body);
}

#[tokio::test]
async fn a_refused_account_gets_1203_and_a_spent_ticket_fails() {
    let sim = sim().await;
    let mut b = Browser::new(&sim);
    let uuid = b.jslogin().await;
    sim.refuse_login(
        1203,
        "为了你的帐号安全，此微信号不能登录网页微信。你可以使用Windows微信或Mac微信在电脑端登录。",
    );
    sim.confirm();
    let (LoginPoll::Confirmed { redirect_uri }, _) = b.poll(&uuid, 1).await else {
        panic!("not confirmed")
    };
    let a = b.exchange_ticket(&redirect_uri).await;
    let t = protocol::parse_ticket(&a.body).unwrap();
    assert_eq!(t.ret, 1203);
    assert!(
        t.message
            .starts_with("为了你的帐号安全，此微信号不能登录网页微信。")
    );
    assert!(a.set_cookies.is_empty());
    assert!(sim.session().is_none());
    let again = b.exchange_ticket(&redirect_uri).await;
    assert_ne!(protocol::parse_ticket(&again.body).unwrap().ret, 0);
    assert_eq!(
        b.poll(&uuid, 1).await.0,
        LoginPoll::Expired,
        "a spent uuid is gone"
    );
}

#[tokio::test]
async fn fault_drop_closes_the_connection() {
    let sim = sim().await;
    let b = Browser::new(&sim);
    sim.inject(Endpoint::JsLogin, Fault::Drop);
    let path = format!("{}/jslogin?appid={}&fun=new", b.base, protocol::APP_ID);
    let result = b.send(b.http.get(&path)).await;
    assert!(result.is_err(), "a dropped connection is a client error");
    // One-shot: the next request is answered.
    assert!(protocol::parse_qrlogin(&b.send(b.http.get(&path)).await.unwrap().body).is_ok());
    assert_eq!(
        sim.requests_to(Endpoint::JsLogin)[0].fault,
        Some(Fault::Drop)
    );
}

#[tokio::test]
async fn fault_status_503_has_an_empty_body() {
    let sim = sim().await;
    let b = Browser::logged_in(&sim).await;
    sim.inject(Endpoint::SyncCheck, Fault::Status(503));
    let a = b.get(&b.sync_check_path(&b.check_key.to_query())).await;
    assert_eq!(a.status, 503);
    assert_eq!(a.body, "");
    assert_eq!(b.sync_check().await.retcode, 0);
}

#[tokio::test]
async fn fault_delay_holds_then_answers() {
    let sim = sim().await;
    let b = Browser::new(&sim);
    sim.inject(Endpoint::JsLogin, Fault::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    b.jslogin().await;
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn fault_empty_body_and_garbage() {
    let sim = sim().await;
    let b = Browser::new(&sim);
    sim.inject(Endpoint::JsLogin, Fault::EmptyBody);
    sim.inject(
        Endpoint::JsLogin,
        Fault::Body("<html>502 Bad Gateway</html>".into()),
    );
    let path = format!("/jslogin?appid={}&fun=new", protocol::APP_ID);
    let empty = b.get(&path).await;
    assert_eq!((empty.status, empty.body.as_str()), (200, ""));
    assert_eq!(b.get(&path).await.body, "<html>502 Bad Gateway</html>");
    assert!(protocol::parse_qrlogin(&b.get(&path).await.body).is_ok());
}

#[tokio::test]
async fn fault_lost_moves_the_stream_on_but_the_client_can_redo_it() {
    let sim = sim().await;
    let mut b = Browser::logged_in(&sim).await;
    b.sync().await;
    let id = sim.pay(99);
    sim.inject(Endpoint::Sync, Fault::Lost);
    let key = b.sync_key.clone();
    let lost = b
        .send(
            b.http
                .post(format!(
                    "{}{CGI}/webwxsync?sid={}&skey={}&lang=zh_CN&pass_ticket={}",
                    b.base,
                    enc(&b.sid),
                    enc(&b.skey),
                    b.pt()
                ))
                .body(
                    json!({"BaseRequest": b.base_request(), "SyncKey": key, "rr": 1}).to_string(),
                ),
        )
        .await;
    assert!(lost.is_err());
    assert_eq!(
        sim.requests_to(Endpoint::Sync).last().unwrap().verdict,
        Verdict::Ok,
        "it was processed"
    );
    assert_eq!(
        msg_ids(&b.sync().await),
        [id],
        "the old key gets the message again"
    );
}

#[tokio::test]
async fn logout_ends_the_session_with_its_retcode() {
    let sim = sim().await;
    let mut b = Browser::logged_in(&sim).await;
    b.sync().await;
    let held = {
        let b = b.clone();
        tokio::spawn(async move { b.sync_check().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    sim.logout(1101);
    assert_eq!(
        held.await.unwrap().retcode,
        1101,
        "a held synccheck ends at once"
    );
    assert_eq!(b.sync_check().await.retcode, 1101);
    assert_eq!(b.sync_with(&b.sync_key).await.ret(), 1101);
    assert_eq!(sim.session().unwrap().ended, Some(1101));
}

#[tokio::test]
async fn webwxlogout_ends_the_session() {
    let sim = sim().await;
    let b = Browser::logged_in(&sim).await;
    let a = b
        .send(
            b.http
                .post(format!(
                    "{}{CGI}/webwxlogout?redirect=1&type=0&skey={}",
                    b.base,
                    enc(&b.skey)
                ))
                .body(format!("sid={}&uin={}", enc(&b.sid), b.uin)),
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    assert_eq!(b.sync_check().await.retcode, 1101);
}

#[tokio::test]
async fn a_forged_payment_comes_from_an_ordinary_contact() {
    let sim = sim().await;
    let mut b = Browser::logged_in(&sim).await;
    b.sync().await;
    sim.forged_payment(10_000);
    sim.pay(1);
    let v = b.sync().await;
    let forged = &v["AddMsgList"][0];
    let real = &v["AddMsgList"][1];
    assert_ne!(forged["FromUserName"], real["FromUserName"]);
    let who = b
        .batch_get(&[
            forged["FromUserName"].as_str().unwrap(),
            real["FromUserName"].as_str().unwrap(),
        ])
        .await
        .json();
    let list = who["ContactList"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list[0]["NickName"].as_str(), list[0]["VerifyFlag"].as_u64()),
        (Some(WXPAY), Some(0))
    );
    assert_eq!(
        (list[1]["NickName"].as_str(), list[1]["VerifyFlag"].as_u64()),
        (Some(WXPAY), Some(24))
    );
    assert!(
        forged["Content"]
            .as_str()
            .unwrap()
            .contains("收款金额￥100.00")
    );
    assert_eq!(sim.contact_by_nickname(WXPAY).unwrap().verify_flag, 24);
}

#[tokio::test]
async fn a_stranger_transfer_brings_its_contact_along() {
    let sim = sim().await;
    let mut b = Browser::logged_in(&sim).await;
    b.sync().await;
    sim.transfer("陌生顾客", 10);
    let v = b.sync().await;
    let msg = &v["AddMsgList"][0];
    assert_eq!(
        (msg["MsgType"].as_u64(), msg["AppMsgType"].as_u64()),
        (Some(49), Some(2000))
    );
    assert_eq!(msg["FileName"], "微信转账");
    assert!(
        msg["Content"]
            .as_str()
            .unwrap()
            .contains("&lt;paysubtype&gt;1&lt;/paysubtype&gt;")
    );
    assert_eq!(v["ModContactList"][0]["NickName"], "陌生顾客");
    assert_eq!(v["ModContactList"][0]["UserName"], msg["FromUserName"]);
    let who = b
        .batch_get(&[msg["FromUserName"].as_str().unwrap()])
        .await
        .json();
    assert_eq!(who["ContactList"][0]["NickName"], "陌生顾客");
}

#[tokio::test]
async fn the_session_survives_a_client_restart() {
    let sim = sim().await;
    let mut b = Browser::logged_in(&sim).await;
    b.sync().await;
    sim.send_text("王芳", "老板，两个包子");
    // A new process: fresh HTTP client, saved cookies, keys and SyncKey.
    let mut resumed = Browser {
        http: reqwest::Client::new(),
        ..b.clone()
    };
    drop(b);
    assert_eq!(resumed.sync_check().await.selector, 2);
    let v = resumed.sync().await;
    assert_eq!(v["AddMsgList"][0]["Content"], "老板，两个包子");
}

#[tokio::test]
async fn messages_before_init_wait_for_the_session() {
    let sim = sim().await;
    let early = sim.pay(7);
    let mut b = Browser::logged_in(&sim).await;
    let v = b.sync().await;
    assert_eq!(v["AddMsgList"][0]["MsgType"], 51);
    assert_eq!(v["AddMsgList"][1]["MsgId"], early.as_str());
}

#[tokio::test]
async fn push_login_offers_a_new_uuid_and_a_new_login_renames_everyone() {
    let sim = sim().await;
    let b = Browser::logged_in(&sim).await;
    let wxpay_before = sim.contact_by_nickname(WXPAY).unwrap().user_name;
    let a = b
        .get(&format!("{CGI}/webwxpushloginurl?uin={}", b.uin))
        .await
        .json();
    assert_eq!(
        (a["ret"].as_str(), a["msg"].as_str()),
        (Some("0"), Some("all ok"))
    );
    let uuid = a["uuid"].as_str().unwrap().to_string();
    assert_eq!(sim.current_uuid(), Some(uuid.clone()));
    sim.confirm();
    let (LoginPoll::Confirmed { redirect_uri }, _) = b.poll(&uuid, 1).await else {
        panic!("not confirmed")
    };
    let mut again = Browser::new(&sim);
    again.cookies = b.cookies.clone();
    again.exchange_ticket(&redirect_uri).await;
    assert_eq!(again.init().await.ret(), 0);
    assert_ne!(again.me, b.me);
    assert_ne!(
        sim.contact_by_nickname(WXPAY).unwrap().user_name,
        wxpay_before
    );
    // The old session is gone.
    assert_eq!(b.sync_with(&b.sync_key).await.ret(), 1100);
    let wrong = b
        .get(&format!("{CGI}/webwxpushloginurl?uin=1"))
        .await
        .json();
    assert_eq!(wrong["ret"], "1");
}

#[tokio::test]
async fn auto_login_scans_and_confirms_by_itself() {
    let sim = Simulator::start(SimConfig {
        auto_login: Some(Duration::from_millis(20)),
        ..SimConfig::for_tests()
    })
    .await
    .unwrap();
    let b = Browser::new(&sim);
    let uuid = b.jslogin().await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let (poll, _) = b.poll(&uuid, 1).await;
        seen.push(poll.clone());
        if matches!(poll, LoginPoll::Confirmed { .. }) {
            break;
        }
    }
    assert_eq!(seen[0], LoginPoll::Scanned);
    assert!(
        matches!(seen.last(), Some(LoginPoll::Confirmed { .. })),
        "{seen:?}"
    );
}

#[tokio::test]
async fn unknown_paths_are_404_and_recorded() {
    let sim = sim().await;
    let b = Browser::new(&sim);
    let a = b.get(&format!("{CGI}/webwxnosuch?x=1")).await;
    assert_eq!(a.status, 404);
    let r = sim.requests();
    assert_eq!(r[0].verdict, Verdict::NotFound);
    assert_eq!(r[0].query_value("x"), Some("1"));
}

#[tokio::test]
async fn fault_drop_sends_no_status_line_at_all() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = sim().await;
    sim.inject(Endpoint::JsLogin, Fault::Drop);
    let addr = sim.base_url().trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /jslogin?appid={} HTTP/1.1\r\nHost: login.wx.qq.com\r\n\r\n",
        protocol::APP_ID
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the server must close the connection");
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
}

#[tokio::test]
async fn the_ticket_needs_fun_new_and_version_v2() {
    let sim = sim().await;
    let mut b = Browser::new(&sim);
    let uuid = b.jslogin().await;
    sim.confirm();
    let (LoginPoll::Confirmed { redirect_uri }, _) = b.poll(&uuid, 1).await else {
        panic!("not confirmed")
    };
    let url = url::Url::parse(&redirect_uri).unwrap();
    let bare = b
        .get(&format!("{}?{}", url.path(), url.query().unwrap()))
        .await;
    assert_eq!(protocol::parse_ticket(&bare.body).unwrap().ret, 1);
    assert!(sim.session().is_none());
    assert!(
        b.exchange_ticket(&redirect_uri)
            .await
            .body
            .contains("<ret>0</ret>")
    );
}

#[tokio::test]
async fn opening_the_qr_url_logs_in_like_a_phone() {
    let sim = sim().await;
    let b = Browser::new(&sim);
    let uuid = b.jslogin().await;
    assert_eq!(b.get(&format!("/l/{uuid}")).await.status, 200);
    assert!(matches!(
        b.poll(&uuid, 1).await.0,
        LoginPoll::Confirmed { .. }
    ));
}

#[tokio::test]
async fn a_clerk_notice_comes_from_the_cashier_assistant() {
    let sim = sim().await;
    let mut b = Browser::logged_in(&sim).await;
    b.sync().await;
    sim.pay_clerk_notice(1);
    let v = b.sync().await;
    let msg = &v["AddMsgList"][0];
    assert_eq!(msg["FileName"], "[店员消息]收款到账0.01元");
    let assistant = sim
        .contact_by_nickname(wechat_sim::CASHIER_ASSISTANT)
        .unwrap();
    assert_eq!(msg["FromUserName"], assistant.user_name.as_str());
    assert_eq!(assistant.verify_flag, 24);
}

/// The counts a storm soak reads: faults by endpoint, QR codes, and a new QR issued while
/// the one before was scanned and still valid (what the owner must never be asked for).
#[tokio::test]
async fn stats_count_faults_by_endpoint_and_a_scanned_qr_replaced() {
    let sim = sim().await;
    let b = Browser::new(&sim);
    sim.inject(Endpoint::JsLogin, Fault::Status(503));
    let path = format!("{}/jslogin?appid={}&fun=new", b.base, protocol::APP_ID);
    assert_eq!(b.send(b.http.get(&path)).await.unwrap().status, 503);
    b.jslogin().await;
    sim.expire_qr();
    b.jslogin().await;
    let stats = sim.stats();
    assert_eq!(stats.faults_at(Endpoint::JsLogin), 1);
    assert_eq!(stats.faults_at(Endpoint::Sync), 0);
    assert_eq!(stats.qr_codes, 2, "the faulted jslogin issued none");
    assert_eq!(stats.valid_qrs_replaced, 0, "an expired QR may be replaced");
    sim.scan();
    let uuid = b.jslogin().await;
    assert_eq!(
        sim.stats().valid_qrs_replaced,
        0,
        "one the client never polled (a lost jslogin answer) may be replaced"
    );
    sim.scan();
    assert_eq!(b.poll(&uuid, 1).await.0, LoginPoll::Scanned);
    b.jslogin().await;
    assert_eq!(sim.stats().valid_qrs_replaced, 1, "a scanned one may not");
}
