//! The real WeChat client against the simulator: login → init → contacts → sync → messages,
//! session persistence, and every fault the real server is known to throw.

mod common;

use std::time::Duration;

use common::session::{Harness, WAIT};
use paysay::session::{Ack, Incoming, SessionError, SessionEvent};
use wechat_sim::{Endpoint, Fault, SimConfig, Verdict};

fn decode_qr(path: &std::path::Path) -> String {
    let img = image::open(path).unwrap().to_luma8();
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(
        img.width() as usize,
        img.height() as usize,
        |x, y| img.get_pixel(x as u32, y as u32)[0],
    );
    let grids = prepared.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the PNG");
    grids[0].decode().unwrap().1
}

#[tokio::test]
async fn login_init_contacts_sync_and_messages_end_to_end() {
    let h = Harness::new(SimConfig {
        contact_page_size: 7,
        extra_contacts: 20,
        ..SimConfig::for_tests()
    })
    .await;
    let mut running = h.start();
    let SessionEvent::QrCode { path, url } = running
        .wait_for(|e| matches!(e, SessionEvent::QrCode { .. }))
        .await
    else {
        unreachable!()
    };
    let uuid = h.sim.current_uuid().unwrap();
    assert_eq!(url, format!("https://login.weixin.qq.com/l/{uuid}"));
    assert_eq!(
        decode_qr(&path),
        url,
        "the PNG decodes back to the login URL"
    );
    h.sim.scan();
    running
        .wait_for(|e| matches!(e, SessionEvent::Scanned))
        .await;
    h.sim.confirm();
    running
        .wait_for(|e| matches!(e, SessionEvent::LoggedIn { resumed: false, .. }))
        .await;

    h.sim.send_text("张三", "你好，今天下午三点取货");
    let pay_id = h.sim.pay(1250);
    let got = running.messages(2).await;
    assert_eq!(
        got[0].message.content, "你好，今天下午三点取货",
        "UTF-8 decoded from raw bytes"
    );
    assert_eq!(got[0].sender.as_ref().unwrap().nick_name, "张三");
    assert_eq!(got[1].message.msg_id, pay_id);
    let sender = got[1]
        .sender
        .as_ref()
        .expect("the payment account's record");
    assert_eq!(sender.nick_name, "微信支付");
    assert!(sender.is_official_account());

    // What the client sent, as the server saw it.
    let info = h.sim.session().unwrap();
    let init = &h.sim.requests_to(Endpoint::Init)[0];
    assert_eq!(init.verdict, Verdict::Ok);
    assert_eq!(
        init.query_value("pass_ticket"),
        Some(info.pass_ticket.as_str())
    );
    assert!(
        h.sim
            .requests_to(Endpoint::StatusNotify)
            .iter()
            .any(|r| r.verdict == Verdict::Ok)
    );
    let contact_pages = h.sim.requests_to(Endpoint::GetContact);
    assert!(
        contact_pages.len() >= 3,
        "contacts paged by Seq: {} pages",
        contact_pages.len()
    );
    assert!(contact_pages.iter().all(|r| r.verdict == Verdict::Ok));
    let refused: Vec<_> = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| matches!(r.verdict, Verdict::Refused(_) | Verdict::EmptyBody))
        .filter(|r| r.endpoint != Some(Endpoint::LoginPoll))
        .collect();
    assert!(refused.is_empty(), "the server refused: {refused:#?}");
    let syncs = h.sim.requests_to(Endpoint::Sync);
    assert!(
        syncs
            .iter()
            .all(|r| r.cookie("webwx_data_ticket") == Some(info.data_ticket.as_str()))
    );

    // The saved session: owner-only, with the keys the server issued.
    running.stop().await.unwrap();
    let text = std::fs::read_to_string(&h.files.session).unwrap();
    let saved: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(saved["uin"], info.uin);
    assert_eq!(saved["sid"], info.sid.as_str());
    assert_eq!(
        saved["skey"],
        info.skey.as_str(),
        "the skey webwxinit issued"
    );
    assert_eq!(
        saved["cookies"]["webwx_data_ticket"],
        info.data_ticket.as_str()
    );
    assert!(saved["device_id"].as_str().unwrap().starts_with('e'));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&h.files.session)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn restart_resumes_without_a_scan_and_gets_what_came_meanwhile() {
    let h = Harness::new(SimConfig::for_tests()).await;
    let mut first = h.start_logged_in().await;
    let a = h.sim.pay(100);
    assert_eq!(first.messages(1).await[0].message.msg_id, a);
    first.stop().await.unwrap();
    let qr_requests = h.sim.requests_to(Endpoint::JsLogin).len();

    // Payments while paysay is down are delivered after the restart.
    let b = h.sim.pay(200);
    let mut second = h.start();
    second
        .wait_for(|e| matches!(e, SessionEvent::LoggedIn { resumed: true, .. }))
        .await;
    let got = second.messages(1).await;
    assert_eq!(got[0].message.msg_id, b);
    assert_eq!(
        h.sim.requests_to(Endpoint::JsLogin).len(),
        qr_requests,
        "no new QR code"
    );
    second.stop().await.unwrap();
}

#[tokio::test]
async fn an_expired_qr_code_is_replaced_by_a_new_one() {
    let h = Harness::new(SimConfig::for_tests()).await;
    let mut running = h.start();
    running
        .wait_for(|e| matches!(e, SessionEvent::QrCode { .. }))
        .await;
    let first_uuid = h.sim.current_uuid().unwrap();
    let first_png = std::fs::read(&h.files.qr_png).unwrap();
    h.sim.expire_qr();
    let SessionEvent::QrCode { url, path } = running
        .wait_for(|e| matches!(e, SessionEvent::QrCode { .. }))
        .await
    else {
        unreachable!()
    };
    let second_uuid = h.sim.current_uuid().unwrap();
    assert_ne!(first_uuid, second_uuid);
    assert!(url.ends_with(&second_uuid));
    assert_ne!(std::fs::read(&path).unwrap(), first_png, "a new PNG");
    assert_eq!(decode_qr(&path), url);
    h.sim.scan();
    h.sim.confirm();
    running
        .wait_for(|e| matches!(e, SessionEvent::LoggedIn { .. }))
        .await;
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_account_stops_with_the_servers_message() {
    let h = Harness::new(SimConfig::for_tests()).await;
    let message =
        "为了你的帐号安全，此微信号不能登录网页微信。你可以使用Windows微信或Mac微信在电脑端登录。";
    h.sim.refuse_login(1203, message);
    let mut running = h.start();
    running
        .wait_for(|e| matches!(e, SessionEvent::QrCode { .. }))
        .await;
    h.sim.scan();
    h.sim.confirm();
    let result = tokio::time::timeout(WAIT, running.task)
        .await
        .unwrap()
        .unwrap();
    let err = result.unwrap_err();
    assert!(
        matches!(err, SessionError::LoginRefused { ret: 1203, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(message),
        "quotes the server: {err}"
    );
    assert!(!h.files.session.exists());
}

#[tokio::test]
async fn logout_mid_run_discards_the_session_and_shows_a_new_qr() {
    let h = Harness::new(SimConfig {
        push_login: false,
        ..SimConfig::for_tests()
    })
    .await;
    let mut running = h.start_logged_in().await;
    assert!(h.files.session.exists());
    h.sim.logout(1101);
    let SessionEvent::LoggedOut { retcode } = running
        .wait_for(|e| matches!(e, SessionEvent::LoggedOut { .. }))
        .await
    else {
        unreachable!()
    };
    assert_eq!(retcode, 1101);
    running
        .wait_for(|e| matches!(e, SessionEvent::QrCode { .. }))
        .await;
    assert!(!h.files.session.exists(), "the dead session is discarded");
    h.sim.scan();
    h.sim.confirm();
    running
        .wait_for(|e| matches!(e, SessionEvent::LoggedIn { resumed: false, .. }))
        .await;
    let id = h.sim.pay(300);
    assert_eq!(running.messages(1).await[0].message.msg_id, id);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn push_login_is_tried_before_a_new_qr_code() {
    let h = Harness::new(SimConfig::for_tests()).await;
    let mut running = h.start_logged_in().await;
    h.sim.logout(1101);
    running
        .wait_for(|e| matches!(e, SessionEvent::PushLoginSent))
        .await;
    h.sim.confirm();
    running
        .wait_for(|e| matches!(e, SessionEvent::LoggedIn { resumed: false, .. }))
        .await;
    let push = h.sim.requests_to(Endpoint::PushLogin);
    assert_eq!(push.len(), 1);
    assert_eq!(push[0].verdict, Verdict::Ok);
    assert!(
        push[0].cookie("webwx_auth_ticket").is_some(),
        "the browser's auth ticket identifies it"
    );
    assert_eq!(
        h.sim.requests_to(Endpoint::JsLogin).len(),
        1,
        "the push login needed no new QR code"
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn network_faults_are_retried_and_nothing_is_lost() {
    let h = Harness::new(SimConfig::for_tests()).await;
    let mut running = h.start_logged_in().await;
    for fault in [
        Fault::Status(503),
        Fault::Drop,
        Fault::EmptyBody,
        Fault::Delay(Duration::from_millis(300)),
        Fault::Body("<html>502 Bad Gateway</html>".into()),
    ] {
        h.sim.inject(Endpoint::SyncCheck, fault);
    }
    h.sim.inject(Endpoint::Sync, Fault::Status(500));
    h.sim.inject(Endpoint::Sync, Fault::Lost);
    let id = h.sim.pay(4200);
    let got = running.messages(1).await;
    assert_eq!(got[0].message.msg_id, id);
    let faulted = h
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.fault.is_some())
        .count();
    assert_eq!(faulted, 7, "every fault was met and retried");
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_burst_bigger_than_a_page_arrives_whole_via_continue_flag() {
    let h = Harness::new(SimConfig {
        sync_page_size: 3,
        ..SimConfig::for_tests()
    })
    .await;
    let mut running = h.start_logged_in().await;
    let ids: Vec<String> = (1..=10).map(|i| h.sim.pay(i * 100)).collect();
    let got = running.messages(10).await;
    let got_ids: Vec<String> = got.into_iter().map(|m| m.message.msg_id).collect();
    assert_eq!(got_ids, ids, "all ten, in order");
    running.stop().await.unwrap();
}

/// Found by the soak: a webwxsync that failed after the first page of a burst threw the
/// pages already read away, though the SyncKey had moved past them, so they were never
/// delivered.
#[tokio::test]
async fn a_fault_mid_burst_loses_none_of_the_pages_already_read() {
    let h = Harness::new(SimConfig {
        sync_page_size: 10,
        ..SimConfig::for_tests()
    })
    .await;
    let mut running = h.start_logged_in().await;
    // The status-notify round is over, so the next webwxsync reads the burst.
    assert!(h.sim.wait_for_requests(Endpoint::Sync, 1, WAIT).await);
    h.sim.inject(Endpoint::Sync, Fault::Delay(Duration::ZERO));
    h.sim.inject(Endpoint::Sync, Fault::Status(503));
    let amounts: Vec<u64> = (1..=25).map(|i| i * 100).collect();
    let ids = h.sim.pay_many(&amounts);
    let got = running.messages(25).await;
    let got_ids: Vec<String> = got.into_iter().map(|m| m.message.msg_id).collect();
    assert_eq!(got_ids, ids, "all 25, in order, each once");
    let faulted = h.sim.requests_to(Endpoint::Sync);
    assert!(faulted.iter().any(|r| r.fault == Some(Fault::Status(503))));
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_redelivered_message_is_passed_on_for_the_ledger_to_drop() {
    let h = Harness::new(SimConfig::for_tests()).await;
    let mut running = h.start_logged_in().await;
    let id = h.sim.pay(500);
    assert_eq!(running.messages(1).await[0].message.msg_id, id);
    assert!(h.sim.redeliver(&id));
    assert_eq!(running.messages(1).await[0].message.msg_id, id);
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_stranger_is_looked_up_with_batchgetcontact() {
    let h = Harness::new(SimConfig::for_tests()).await;
    let mut running = h.start_logged_in().await;
    h.sim.transfer("路人甲", 1000);
    let got = running.messages(1).await;
    assert_eq!(
        got[0].sender.as_ref().map(|c| c.nick_name.as_str()),
        Some("路人甲")
    );
    running.stop().await.unwrap();
}

#[tokio::test]
async fn a_failed_sender_lookup_reads_the_round_again_rather_than_lose_a_payment() {
    // The payment account is neither a recent chat nor (the contact list failed) a contact:
    // only webwxbatchgetcontact can say who it is, and its first answer is a 503.
    let h = Harness::new(SimConfig {
        recent_chats: 0,
        ..SimConfig::for_tests()
    })
    .await;
    h.sim.inject(Endpoint::GetContact, Fault::Status(500));
    let mut running = h.start_logged_in().await;
    h.sim.inject(Endpoint::BatchGetContact, Fault::Status(503));
    let id = h.sim.pay(1250);
    let got = running.messages(1).await;
    assert_eq!(got[0].message.msg_id, id);
    let sender = got[0]
        .sender
        .as_ref()
        .expect("the sender's record, after a retry");
    assert!(sender.is_official_account());
    assert_eq!(sender.nick_name, "微信支付");
    let lookups = h.sim.requests_to(Endpoint::BatchGetContact);
    assert_eq!(lookups.len(), 2, "one refused, one answered");
    running.stop().await.unwrap();
}

/// Issue 10: a batch the daemon could not record (the ledger failed), or whose
/// acknowledgement was dropped, was acknowledged all the same, and the SyncKey moved past
/// the payment. Now the session asks again from the old SyncKey until it is recorded.
#[tokio::test]
async fn a_batch_not_recorded_is_asked_for_again_from_the_old_sync_key() {
    let h = Harness::new(SimConfig::for_tests()).await;
    let mut running = h.start_logged_in().await;
    let id = h.sim.pay(1250);
    let carries = |e: &SessionEvent| matches!(e, SessionEvent::Messages { batch, .. } if batch.iter().any(|m| m.message.msg_id == id));
    // Refused, then dropped (no answer is no yes), then recorded.
    for answer in [Some(Ack::NotRecorded), None, Some(Ack::Recorded)] {
        let SessionEvent::Messages { ack, .. } = running.wait_for(carries).await else {
            unreachable!("wait_for returns a batch with the payment")
        };
        if let Some(answer) = answer {
            ack.send(answer).unwrap();
        }
    }
    // Recorded: the stream moves on, and the payment does not come a fourth time.
    let next = h.sim.pay(300);
    let got = running.messages(1).await;
    assert_eq!(got[0].message.msg_id, next);

    let sent_key = |r: &wechat_sim::RecordedRequest| {
        serde_json::from_str::<serde_json::Value>(&r.body).unwrap()["SyncKey"].clone()
    };
    let delivering: Vec<_> = h
        .sim
        .requests_to(Endpoint::Sync)
        .into_iter()
        .filter(|r| r.response.contains(id.as_str()))
        .collect();
    assert_eq!(delivering.len(), 3, "delivered three times, no more");
    assert!(
        delivering
            .iter()
            .all(|r| sent_key(r) == sent_key(&delivering[0])),
        "each time from the old SyncKey"
    );
    running.stop().await.unwrap();
}

fn ids_of(messages: &[Incoming]) -> Vec<String> {
    messages.iter().map(|m| m.message.msg_id.clone()).collect()
}

/// Found by the storm soak: a burst read in two webwxsync pages, whose sender could not be
/// looked up, was thrown away and asked for again from the round's first SyncKey; but the
/// second page's request had already told the server the first page was received. When
/// WeChat ended the session before the round was read again, the next session got only
/// what followed the second page's SyncKey: the first page's payments were lost.
#[tokio::test]
async fn a_logout_after_a_failed_sender_lookup_loses_no_page_of_a_burst() {
    // The payment account is known only through webwxbatchgetcontact (see above).
    let h = Harness::new(SimConfig {
        sync_page_size: 3,
        recent_chats: 0,
        ..SimConfig::for_tests()
    })
    .await;
    h.sim.inject(Endpoint::GetContact, Fault::Status(500));
    let mut running = h.start_logged_in().await;
    running.status_notify_round().await;
    // The lookup fails, and its retry is held until the session has ended.
    h.sim.inject(Endpoint::BatchGetContact, Fault::Status(503));
    h.sim.inject(
        Endpoint::BatchGetContact,
        Fault::Delay(Duration::from_secs(2)),
    );
    let ids = h.sim.pay_many(&[100, 200, 300, 400, 500]);
    assert!(
        h.sim
            .wait_for_requests(Endpoint::BatchGetContact, 1, WAIT)
            .await
    );
    h.sim.logout(1101);
    let got = running.messages_across_relogin(&h.sim, ids.len()).await;
    assert_eq!(ids_of(&got), ids, "all five, in order, each once");
    assert_eq!(h.sim.stats().logins, 2, "after a re-login");
    running.stop().await.unwrap();
}

/// The same through the daemon: a batch the ledger could not take is asked for again from
/// its first SyncKey, so no later SyncKey may have been sent for it; else a logout before
/// the redelivery loses what the server took as received.
#[tokio::test]
async fn a_logout_after_an_unrecorded_batch_loses_none_of_it() {
    let h = Harness::new(SimConfig {
        sync_page_size: 3,
        ..SimConfig::for_tests()
    })
    .await;
    let mut running = h.start_logged_in().await;
    running.status_notify_round().await;
    let ids = h.sim.pay_many(&[100, 200, 300, 400, 500]);
    let SessionEvent::Messages { ack, .. } = running
        .wait_for(|e| matches!(e, SessionEvent::Messages { .. }))
        .await
    else {
        unreachable!("wait_for returns a batch")
    };
    h.sim.logout(1101);
    ack.send(Ack::NotRecorded).unwrap();
    let got = running.messages_across_relogin(&h.sim, ids.len()).await;
    assert_eq!(ids_of(&got), ids, "all five, in order, each once");
    assert_eq!(h.sim.stats().logins, 2, "after a re-login");
    running.stop().await.unwrap();
}

/// webwxsendmsg as the web client sends it: raw UTF-8, a 17-digit LocalID equal to
/// ClientMsgId, to `filehelper` or to a contact found by its name.
#[tokio::test]
async fn a_text_goes_to_the_file_helper_or_a_contact_by_name_as_the_web_client_sends_it() {
    let h = Harness::new(SimConfig::for_tests()).await;
    let mut running = h.start_logged_in().await;
    running
        .send("filehelper", "今日收款 2 笔，共计 ￥1,234.50")
        .await
        .unwrap();
    running.send("张伟", "paysay 测试").await.unwrap();
    let sent = h.sim.sent_messages();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].to, "filehelper");
    assert_eq!(sent[0].to_nick, "文件传输助手");
    assert_eq!(sent[0].content, "今日收款 2 笔，共计 ￥1,234.50");
    assert_eq!(sent[1].to_nick, "张伟");
    assert_eq!(
        sent[1].to,
        h.sim.contact_by_nickname("张伟").unwrap().user_name
    );
    for s in &sent {
        assert_eq!(s.local_id.len(), 17);
        assert!(s.local_id.bytes().all(|b| b.is_ascii_digit()));
    }
    let requests = h.sim.requests_to(Endpoint::SendMsg);
    assert!(
        requests[0].body.contains("今日收款"),
        "Chinese is sent as raw UTF-8, not \\u escapes: {}",
        requests[0].body
    );
    assert!(requests.iter().all(|r| r.verdict == Verdict::Ok));
    // Nobody of that name: said so, and nothing is sent.
    let unknown = running.send("没有这个人", "x").await;
    assert!(
        matches!(unknown, Err(SessionError::UnknownRecipient { .. })),
        "{unknown:?}"
    );
    assert_eq!(h.sim.requests_to(Endpoint::SendMsg).len(), 2);
    running.stop().await.unwrap();
}

/// 1205 (sending too much) is one request, an error of its own, and no logout: the
/// session goes on and delivers payments.
#[tokio::test]
async fn a_refused_text_is_one_request_and_the_session_goes_on() {
    let h = Harness::new(SimConfig::for_tests()).await;
    let mut running = h.start_logged_in().await;
    h.sim.refuse_sends(Some(1205));
    let refused = running.send("filehelper", "今日收款").await;
    assert!(
        matches!(refused, Err(SessionError::SendRefused { ret: 1205, .. })),
        "{refused:?}"
    );
    assert_eq!(
        h.sim.requests_to(Endpoint::SendMsg).len(),
        1,
        "never retried at once"
    );
    assert!(h.sim.sent_messages().is_empty());
    let paid = h.sim.pay(1250);
    let got = running.messages_until(&paid).await;
    assert!(got.iter().any(|m| m.message.msg_id == paid));
    assert!(
        !running.seen.iter().any(|e| e == "LoggedOut"),
        "a refusal is no logout: {:?}",
        running.seen
    );
    running.stop().await.unwrap();
}
