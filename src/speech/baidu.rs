//! Baidu's short-text speech synthesis (`text2audio`) over HTTP.
//!
//! An OAuth token (`client_credentials`) is fetched once and kept until shortly before it
//! expires (Baidu's live 30 days); when the server still calls it invalid (err_no 502, or the
//! platform's 110/111), it is fetched again and the synthesis retried once.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::Mutex;

use super::{Audio, AudioFormat, SynthFuture, Synthesizer, TtsError};
use crate::config::{Aue, BaiduConfig};

/// err_no values that mean "get a new token": 502 token check failed (text2audio),
/// 110 token invalid, 111 token expired (Baidu's platform-wide codes).
const TOKEN_ERRORS: [i64; 3] = [502, 110, 111];
/// A token answer is a few hundred bytes of JSON.
const MAX_TOKEN_ANSWER_BYTES: u64 = 64 * 1024;
/// An announcement is a few seconds of audio: tens of kB as mp3, a few hundred as wav.
const MAX_AUDIO_BYTES: u64 = 8 * 1024 * 1024;

/// The Baidu backend; `api_key`/`secret_key`, URLs and voice come from `[speech.baidu]`.
pub struct BaiduSynthesizer {
    config: BaiduConfig,
    http: reqwest::Client,
    token: Mutex<Option<Token>>,
}

struct Token {
    value: String,
    refresh_after: Instant,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    err_no: i64,
    #[serde(default)]
    err_msg: String,
}

impl BaiduSynthesizer {
    /// A backend for `config`; fails only if the HTTP client cannot be built.
    pub fn new(config: &BaiduConfig) -> Result<BaiduSynthesizer, TtsError> {
        if config.api_key.is_empty() || config.secret_key.is_empty() {
            tracing::warn!("speech backend baidu is listed but has no api_key/secret_key");
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            .build()
            .map_err(|e| TtsError::Network {
                url: config.tts_url.clone(),
                reason: e.to_string(),
            })?;
        Ok(BaiduSynthesizer {
            config: config.clone(),
            http,
            token: Mutex::new(None),
        })
    }

    async fn speak(&self, text: &str) -> Result<Audio, TtsError> {
        if self.config.api_key.is_empty() || self.config.secret_key.is_empty() {
            return Err(TtsError::NotConfigured);
        }
        let token = self.token(false).await?;
        match self.text2audio(text, &token).await {
            Err(TtsError::Api { code, message }) if TOKEN_ERRORS.contains(&code) => {
                tracing::info!(
                    "baidu refused the token (err_no {code}: {}); fetching a new one",
                    crate::text::Escaped(&message)
                );
                let token = self.token(true).await?;
                self.text2audio(text, &token).await
            }
            other => other,
        }
    }

    /// The current token, fetched when missing, stale, or `renew` is set.
    async fn token(&self, renew: bool) -> Result<String, TtsError> {
        let mut slot = self.token.lock().await;
        if let Some(token) = slot.as_ref() {
            if !renew && Instant::now() < token.refresh_after {
                return Ok(token.value.clone());
            }
        }
        let token = self.fetch_token().await?;
        let value = token.value.clone();
        *slot = Some(token);
        Ok(value)
    }

    async fn fetch_token(&self) -> Result<Token, TtsError> {
        let url = &self.config.token_url;
        let response = self
            .http
            .post(url)
            .query(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.config.api_key.as_str()),
                ("client_secret", self.config.secret_key.as_str()),
            ])
            .send()
            .await
            .map_err(|e| self.request_error(url, e))?;
        let body = self
            .read_body(url, response, MAX_TOKEN_ANSWER_BYTES)
            .await?;
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|e| TtsError::BadResponse {
                url: url.clone(),
                detail: format!("token answer is not JSON ({e}): {}", snippet(&body)),
            })?;
        let Some(value) = answer.access_token else {
            let reason = [answer.error, answer.error_description]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(": ");
            return Err(TtsError::TokenRefused(reason));
        };
        // Renew a tenth of the lifetime early (at most a day) so a token never expires
        // between the check and the synthesis request.
        let lifetime = answer.expires_in.unwrap_or(0);
        let margin = (lifetime / 10).min(86_400);
        // checked_add: the lifetime comes from the network and could overflow an Instant.
        let refresh_after = Instant::now()
            .checked_add(Duration::from_secs(lifetime - margin))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400));
        tracing::debug!("baidu token valid for {lifetime} s");
        Ok(Token {
            value,
            refresh_after,
        })
    }

    async fn text2audio(&self, text: &str, token: &str) -> Result<Audio, TtsError> {
        let url = &self.config.tts_url;
        // Baidu asks for `tex` URL-encoded twice: once here, once by the form encoding.
        // Only the double encoding carries every character (a single `+` would become a
        // space), per Baidu's REST API documentation.
        let tex: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
        let c = &self.config;
        let numbers = [
            ("spd", c.spd),
            ("pit", c.pit),
            ("vol", c.vol),
            ("per", c.per),
            ("aue", c.aue.code()),
        ];
        let mut form: Vec<(&str, String)> = vec![
            ("tex", tex),
            ("tok", token.to_string()),
            ("cuid", "paysay".to_string()),
            ("ctp", "1".to_string()),
            ("lan", "zh".to_string()),
        ];
        form.extend(numbers.iter().map(|(k, v)| (*k, v.to_string())));
        let response = self
            .http
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(|e| self.request_error(url, e))?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let status = response.status();
        let body = self.read_body(url, response, MAX_AUDIO_BYTES).await?;
        if content_type.starts_with("audio/") {
            return Ok(Audio {
                bytes: body,
                format: self.format(&content_type),
            });
        }
        match serde_json::from_slice::<ErrorAnswer>(&body) {
            Ok(e) => {
                tracing::warn!(
                    err_no = e.err_no,
                    "baidu text2audio error: {}",
                    crate::text::Escaped(&e.err_msg)
                );
                Err(TtsError::Api {
                    code: e.err_no,
                    message: e.err_msg,
                })
            }
            Err(_) => Err(TtsError::BadResponse {
                url: url.clone(),
                detail: format!("HTTP {status}, {content_type:?}: {}", snippet(&body)),
            }),
        }
    }

    /// The container, from the Content-Type, else from the `aue` that was asked for.
    fn format(&self, content_type: &str) -> AudioFormat {
        if content_type.contains("mp3") || content_type.contains("mpeg") {
            AudioFormat::Mp3
        } else if content_type.contains("wav") {
            AudioFormat::Wav
        } else {
            match self.config.aue {
                Aue::Mp3 => AudioFormat::Mp3,
                Aue::Wav => AudioFormat::Wav,
            }
        }
    }

    /// The answer's body, refused past `limit` bytes: a broken or hostile server must not
    /// fill the memory of the shop's computer.
    async fn read_body(
        &self,
        url: &str,
        response: reqwest::Response,
        limit: u64,
    ) -> Result<Vec<u8>, TtsError> {
        crate::body::read_capped(response, limit)
            .await
            .map_err(|e| match e {
                crate::body::BodyError::TooLarge => TtsError::BadResponse {
                    url: url.to_string(),
                    detail: format!("the answer is larger than {limit} bytes; not read"),
                },
                crate::body::BodyError::Network(e) => self.request_error(url, e),
            })
    }

    fn request_error(&self, url: &str, e: reqwest::Error) -> TtsError {
        if e.is_timeout() {
            TtsError::Timeout {
                url: url.to_string(),
                secs: self.config.timeout_secs.max(1),
            }
        } else {
            // without_url: the token URL's query holds the secret key, which must not be logged.
            TtsError::Network {
                url: url.to_string(),
                reason: crate::error_chain(&e.without_url()),
            }
        }
    }
}

impl Synthesizer for BaiduSynthesizer {
    fn name(&self) -> &'static str {
        "baidu"
    }

    fn voice(&self) -> String {
        let c = &self.config;
        format!(
            "per{}-spd{}-pit{}-vol{}-aue{}",
            c.per,
            c.spd,
            c.pit,
            c.vol,
            c.aue.code()
        )
    }

    fn synthesize<'a>(&'a self, text: &'a str) -> SynthFuture<'a> {
        Box::pin(self.speak(text))
    }
}

/// The start of a body for an error message, lossily decoded.
fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}
