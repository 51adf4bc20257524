//! The page itself: `page.html`, in the language the browser prefers, with the payment
//! kinds' names filled in from [`PaymentKind`] so that the page says what the owner's
//! daily summary says.

use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::payment::PaymentKind;

/// The page, with `{{lang}}` and `{{kinds}}` where the server puts the language and the
/// payment kinds' names in it.
const PAGE: &str = include_str!("page.html");

/// The page's language: Chinese, unless the browser's first choice is English.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    Zh,
    En,
}

impl Lang {
    fn tag(self) -> &'static str {
        match self {
            Lang::Zh => "zh-CN",
            Lang::En => "en",
        }
    }

    /// Each payment kind's name in this language, as a script's object literal
    /// (`{"collection":"二维码收款",…}`): the page shows the words the owner's summary uses.
    fn kind_labels(self) -> String {
        let labels: serde_json::Map<String, serde_json::Value> = PaymentKind::ALL
            .into_iter()
            .map(|kind| {
                let label = match self {
                    Lang::Zh => kind.label_zh(),
                    Lang::En => kind.label_en(),
                };
                (kind.as_str().to_string(), label.into())
            })
            .collect();
        serde_json::Value::Object(labels).to_string()
    }

    /// From `Accept-Language`: the language of the highest weight (the first among
    /// equals) decides; anything but English is Chinese.
    fn negotiate(accept: Option<&str>) -> Lang {
        let best = accept
            .unwrap_or_default()
            .split(',')
            .filter_map(|item| {
                let mut parts = item.split(';');
                let tag = parts.next()?.trim();
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q="))
                    .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
                (!tag.is_empty() && q > 0.0).then_some((tag, q))
            })
            .fold(None::<(&str, f32)>, |best, (tag, q)| match best {
                Some((_, best_q)) if best_q >= q => best,
                _ => Some((tag, q)),
            });
        match best {
            Some((tag, _)) if tag.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("en")) => {
                Lang::En
            }
            _ => Lang::Zh,
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    lang: Option<String>,
}

/// `/`: the page; `?lang=en`/`zh` overrides the browser's `Accept-Language`.
pub(super) async fn serve(Query(q): Query<PageQuery>, headers: HeaderMap) -> Response {
    let lang = match q.lang.as_deref() {
        Some("en") => Lang::En,
        Some("zh") => Lang::Zh,
        _ => Lang::negotiate(
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        ),
    };
    let page = PAGE
        .replace("{{lang}}", lang.tag())
        .replace("{{kinds}}", &lang.kind_labels());
    let mut response = Html(page).into_response();
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept-Language"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_unless_english_comes_first() {
        for (header, lang) in [
            (None, Lang::Zh),
            (Some(""), Lang::Zh),
            (Some("zh-CN,zh;q=0.9,en;q=0.8"), Lang::Zh),
            (Some("en-US,en;q=0.9,zh-CN;q=0.8"), Lang::En),
            (Some("EN"), Lang::En),
            (Some("zh;q=0.5, en-GB;q=0.8"), Lang::En),
            (Some("fr-FR,fr;q=0.9"), Lang::Zh),
            (Some("en;q=0, zh"), Lang::Zh),
        ] {
            assert_eq!(Lang::negotiate(header), lang, "{header:?}");
        }
    }

    #[test]
    fn the_page_names_kinds_as_the_summary_does() {
        let zh: serde_json::Value = serde_json::from_str(&Lang::Zh.kind_labels()).unwrap();
        assert_eq!(zh["collection"], PaymentKind::Collection.label_zh());
        assert_eq!(zh["collection"], "二维码收款");
        let en: serde_json::Value = serde_json::from_str(&Lang::En.kind_labels()).unwrap();
        assert_eq!(en["red_packet"], "red packet");
        assert_eq!(en.as_object().unwrap().len(), PaymentKind::ALL.len());
    }

    #[test]
    fn the_page_is_small_and_self_contained() {
        assert!(PAGE.len() < 50 * 1024, "{} bytes", PAGE.len());
        assert!(PAGE.contains("{{lang}}") && PAGE.contains("{{kinds}}"));
        for outside in ["http://", "https://", "//cdn", "@import"] {
            assert!(!PAGE.contains(outside), "the page refers to {outside}");
        }
    }
}
