//! Routing, fault injection and the request record: the part of the simulator that is about
//! HTTP rather than WeChat. Each request is read whole into a [`SimRequest`], answered by its
//! endpoint's handler as a [`Reply`] (or by an injected fault), recorded, and logged.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use axum::routing::any;

use super::state::Shared;
use super::{Endpoint, Fault, RecordedRequest, Verdict, handlers, pair};

/// The largest body read; WeChat's requests are a few KB.
const MAX_BODY: usize = 1 << 20;

/// A request read whole, with query and cookies parsed the way the server reads them.
#[derive(Debug, Clone)]
pub(crate) struct SimRequest {
    pub method: Method,
    pub path: String,
    /// Percent-decoded once (and `+` read as a space), as any form parser does.
    pub query: Vec<(String, String)>,
    pub cookies: Vec<(String, String)>,
    pub body: Bytes,
}

impl SimRequest {
    async fn read(req: Request) -> SimRequest {
        let (parts, body) = req.into_parts();
        let query = parts
            .uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .into_owned()
                    .collect()
            })
            .unwrap_or_default();
        let cookies = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // A body that cannot be read whole is treated as empty, as the server would.
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .unwrap_or_default();
        SimRequest {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query,
            cookies,
            body,
        }
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        pair(&self.query, name)
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        pair(&self.cookies, name)
    }
}

/// An endpoint's answer, before it becomes an HTTP response.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub set_cookies: Vec<String>,
    pub verdict: Verdict,
}

impl Reply {
    /// A JavaScript-assignment body (`window.code=408;`).
    pub fn js(body: impl Into<String>, verdict: Verdict) -> Reply {
        Reply::new("text/javascript", body.into(), verdict)
    }

    /// JSON or XML: WeChat serves both as `text/plain`.
    pub fn text(body: impl Into<String>, verdict: Verdict) -> Reply {
        Reply::new("text/plain", body.into(), verdict)
    }

    /// HTTP 200 with nothing in it: the answer to an empty POST body.
    pub fn empty() -> Reply {
        Reply::new("text/plain", String::new(), Verdict::EmptyBody)
    }

    fn new(content_type: &'static str, body: String, verdict: Verdict) -> Reply {
        Reply {
            status: 200,
            content_type,
            body,
            set_cookies: Vec::new(),
            verdict,
        }
    }

    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        for cookie in self.set_cookies {
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                headers.append(header::SET_COOKIE, value);
            }
        }
        response
    }
}

/// Serves until the shared cancellation token fires.
pub(crate) async fn run(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let cancel = shared.cancel.clone();
    let app = router(shared);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::warn!("WeChat simulator stopped: {e}");
    }
}

fn router(shared: Arc<Shared>) -> Router {
    const CGI: &str = "/cgi-bin/mmwebwx-bin";
    let routes = [
        ("/jslogin".to_string(), Endpoint::JsLogin),
        ("/l/{uuid}".to_string(), Endpoint::QrPage),
        (format!("{CGI}/login"), Endpoint::LoginPoll),
        (format!("{CGI}/webwxnewloginpage"), Endpoint::Ticket),
        (format!("{CGI}/webwxinit"), Endpoint::Init),
        (format!("{CGI}/webwxstatusnotify"), Endpoint::StatusNotify),
        (format!("{CGI}/webwxgetcontact"), Endpoint::GetContact),
        (
            format!("{CGI}/webwxbatchgetcontact"),
            Endpoint::BatchGetContact,
        ),
        (format!("{CGI}/synccheck"), Endpoint::SyncCheck),
        (format!("{CGI}/webwxsync"), Endpoint::Sync),
        (format!("{CGI}/webwxpushloginurl"), Endpoint::PushLogin),
        (format!("{CGI}/webwxlogout"), Endpoint::Logout),
        (format!("{CGI}/webwxsendmsg"), Endpoint::SendMsg),
    ];
    let mut app = Router::new();
    for (path, endpoint) in routes {
        app = app.route(
            &path,
            any(move |State(s): State<Arc<Shared>>, req: Request| serve(s, Some(endpoint), req)),
        );
    }
    app.fallback(|State(s): State<Arc<Shared>>, req: Request| serve(s, None, req))
        .with_state(shared)
}

/// One request: fault or handler, then the record and a debug line.
async fn serve(shared: Arc<Shared>, endpoint: Option<Endpoint>, req: Request) -> Response {
    let req = SimRequest::read(req).await;
    let fault = endpoint.and_then(|e| shared.with(|w| w.take_fault(e)));
    let (reply, drop_connection) = match (&fault, endpoint) {
        (_, None) => (not_found(), false),
        (None, Some(e)) => (handlers::handle(&shared, e, &req).await, false),
        (Some(Fault::Delay(d)), Some(e)) => {
            tokio::select! {
                _ = tokio::time::sleep(*d) => {}
                _ = shared.cancel.cancelled() => {}
            }
            (handlers::handle(&shared, e, &req).await, false)
        }
        (Some(Fault::Lost), Some(e)) => (handlers::handle(&shared, e, &req).await, true),
        (Some(Fault::Drop), _) => (Reply::js("", Verdict::Faulted), true),
        (Some(Fault::Status(code)), _) => {
            let mut r = Reply::text("", Verdict::Faulted);
            r.status = *code;
            (r, false)
        }
        (Some(Fault::EmptyBody), _) => (Reply::text("", Verdict::Faulted), false),
        (Some(Fault::Body(garbage)), _) => (Reply::text(garbage.clone(), Verdict::Faulted), false),
    };
    tracing::debug!(
        endpoint = ?endpoint,
        method = %req.method,
        path = %req.path,
        verdict = ?reply.verdict,
        fault = ?fault,
        "simulator request"
    );
    record(&shared, endpoint, &req, &reply, fault);
    if drop_connection {
        return dropped_connection();
    }
    reply.into_response()
}

fn not_found() -> Reply {
    let mut r = Reply::text("", Verdict::NotFound);
    r.status = 404;
    r
}

fn record(
    shared: &Shared,
    endpoint: Option<Endpoint>,
    req: &SimRequest,
    reply: &Reply,
    fault: Option<Fault>,
) {
    let entry = RecordedRequest {
        endpoint,
        method: req.method.to_string(),
        path: req.path.clone(),
        query: req.query.clone(),
        cookies: req.cookies.clone(),
        body: String::from_utf8_lossy(&req.body).into_owned(),
        verdict: reply.verdict.clone(),
        fault,
        status: reply.status,
        response: reply.body.clone(),
        answered_at: std::time::Instant::now(),
    };
    shared.update(|w| w.record(entry));
}

/// A response whose body fails before its first byte: hyper then closes the connection
/// without completing (or, as it buffers the head with the body, without even sending) the
/// response, so the client sees a connection error rather than an answer.
fn dropped_connection() -> Response {
    let failing = futures_util::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "simulated connection drop",
        ))
    });
    Response::new(Body::from_stream(failing))
}
