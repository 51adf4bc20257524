//! The door every request passes: [`access`](super::access)'s rule applied to the
//! request's peer, `Host` and token, and the headers that keep the page's data out of
//! caches and other sites' frames. The rule is in `access`; reading it off HTTP is here.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::App;
use super::access::{self, Refusal};

/// The middleware on every route: refuses whom the access rule refuses, marks every
/// answer uncacheable and unframeable, and leaves the cookie when the printed address
/// brought the token.
pub(super) async fn guard(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let from_query = query_token(request.uri().query());
    let presented = from_query
        .clone()
        .or_else(|| bearer(headers))
        .or_else(|| cookie(headers, access::COOKIE));
    // No peer address is a server set up without ConnectInfo: refuse rather than guess.
    let verdict = match peer {
        Some(peer) => app.access.check(peer, host, presented.as_deref()),
        None => Err(Refusal::NeedsToken),
    };
    if let Err(refusal) = verdict {
        return refused(refusal);
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
        ),
    );
    // The printed address carries the token once; the cookie keeps the tablet in.
    if let (Some(token), Some(given)) = (app.access.token(), from_query)
        && given == token
        && let Ok(value) = HeaderValue::from_str(&format!(
            "{}={token}; Path=/; Max-Age=31536000; HttpOnly; SameSite=Strict",
            access::COOKIE
        ))
    {
        headers.insert(header::SET_COOKIE, value);
    }
    response
}

/// The 403, saying in the owner's words how to get in.
fn refused(refusal: Refusal) -> Response {
    let why = match refusal {
        Refusal::NeedsToken => {
            "paysay: this page opens from another device only with the address paysay printed at start (it ends in ?token=...). 请使用 paysay 启动时打印的带 token 的地址打开。\n"
        }
        Refusal::ForeignHost => {
            "paysay: open the page as http://127.0.0.1:PORT/ on this computer, or with the address paysay printed (with ?token=...).\n"
        }
    };
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        why,
    )
        .into_response()
}

/// The token may come three ways: the printed address's `?token=`, a program's
/// `Authorization: Bearer`, or the cookie a first visit with the address leaves.
fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == "token")
        .map(|(_, value)| value.into_owned())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(|t| t.trim().to_string())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_the_query_a_bearer_header_or_the_cookie() {
        assert_eq!(
            query_token(Some("lang=en&token=abc")).as_deref(),
            Some("abc")
        );
        assert_eq!(query_token(Some("lang=en")), None);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; paysay_token=def; b=2"),
        );
        assert_eq!(bearer(&headers).as_deref(), Some("xyz"));
        assert_eq!(cookie(&headers, access::COOKIE).as_deref(), Some("def"));
    }
}
