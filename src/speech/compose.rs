//! Composing an announcement from clips, the way hardware payment speakers do: the words of
//! the template around `{amount}`, then the amount word by word (from the reading rules in
//! `words.rs`, never a table of its own), joined with short crossfades and the pauses a
//! person makes. Pure and in memory: no synthesis, no file, well under a millisecond.

use std::time::Duration;

use super::Pcm;
use super::bank::{Bank, RATE};
use super::words::amount_tokens;

/// Overlap of two neighbouring clips. The bank fades every clip in and out over a few ms, so
/// the overlap joins two near-silent edges: no click, and the words follow each other as
/// closely as a person says a number.
pub const CROSSFADE: Duration = Duration::from_millis(8);
/// The breath between the template's opening words and the amount (微信收款 | 十二元).
pub const PAUSE_BEFORE_AMOUNT: Duration = Duration::from_millis(60);
/// The pause after 元 when the template goes on (…元 | 谢谢惠顾).
pub const PAUSE_AFTER_YUAN: Duration = Duration::from_millis(220);

/// The text said for 元, a clip of its own in every bank.
pub const YUAN: &str = "元";

/// A template cut where the composer needs it: the words before `{amount}`, whether 元
/// follows the amount, and whatever comes after that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub before: String,
    pub yuan: bool,
    pub after: String,
}

impl Template {
    /// The parts of `template`; `None` when it does not hold `{amount}` exactly once (such a
    /// template is only ever said as a whole phrase).
    pub fn parse(template: &str) -> Option<Template> {
        let (before, rest) = template.split_once("{amount}")?;
        if rest.contains("{amount}") {
            return None;
        }
        let (yuan, after) = match rest.strip_prefix(YUAN) {
            Some(after) => (true, after),
            None => (false, rest),
        };
        Some(Template {
            before: before.trim().to_string(),
            yuan,
            after: after.trim().to_string(),
        })
    }
}

/// One step of a composed announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part<'a> {
    /// The clip of this text.
    Clip(&'a str),
    /// Silence.
    Pause(Duration),
}

/// What is said for `fen` with `template`, in order.
pub fn script(template: &Template, fen: u64) -> Vec<Part<'_>> {
    let mut parts = Vec::new();
    if !template.before.is_empty() {
        parts.push(Part::Clip(&template.before));
        parts.push(Part::Pause(PAUSE_BEFORE_AMOUNT));
    }
    parts.extend(amount_tokens(fen).into_iter().map(|w| Part::Clip(w.text())));
    if template.yuan {
        parts.push(Part::Clip(YUAN));
    }
    if !template.after.is_empty() {
        if template.yuan {
            parts.push(Part::Pause(PAUSE_AFTER_YUAN));
        }
        parts.push(Part::Clip(&template.after));
    }
    parts
}

/// The announcement of `parts` from `bank`'s clips; `None` when the bank lacks one of them.
pub fn compose(bank: &Bank, parts: &[Part<'_>]) -> Option<Pcm> {
    let overlap = samples_in(CROSSFADE);
    let mut out: Vec<i16> = Vec::with_capacity(RATE as usize * 3);
    // Whether the end of `out` is a clip that the next clip may overlap (not after a pause).
    let mut joinable = false;
    for part in parts {
        match part {
            Part::Pause(pause) => {
                out.resize(out.len() + samples_in(*pause), 0);
                joinable = false;
            }
            Part::Clip(text) => {
                let clip = bank.clip(text)?;
                let n = if joinable {
                    overlap.min(clip.len() / 2).min(out.len())
                } else {
                    0
                };
                crossfade(&mut out, clip, n);
                joinable = true;
            }
        }
    }
    Some(Pcm {
        rate: RATE,
        samples: out,
    })
}

/// Appends `clip` to `out`, its first `n` samples mixed over `out`'s last `n` with a
/// linear crossfade.
fn crossfade(out: &mut Vec<i16>, clip: &[i16], n: usize) {
    let start = out.len() - n;
    for (i, (old, new)) in out[start..].iter_mut().zip(&clip[..n]).enumerate() {
        let t = (i as f32 + 0.5) / n as f32;
        let mixed = f32::from(*old) * (1.0 - t) + f32::from(*new) * t;
        *old = mixed
            .round()
            .clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16;
    }
    out.extend_from_slice(&clip[n..]);
}

/// Samples of `d` at the bank's rate.
pub fn samples_in(d: Duration) -> usize {
    (d.as_secs_f64() * f64::from(RATE)).round() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_around_the_amount_and_yuan() {
        let t = Template::parse("微信收款{amount}元").unwrap();
        assert_eq!(
            (t.before.as_str(), t.yuan, t.after.as_str()),
            ("微信收款", true, "")
        );
        let t = Template::parse("收到{amount}元，谢谢惠顾").unwrap();
        assert_eq!(
            (t.before.as_str(), t.yuan, t.after.as_str()),
            ("收到", true, "，谢谢惠顾")
        );
        let t = Template::parse("{amount}块").unwrap();
        assert_eq!(
            (t.before.as_str(), t.yuan, t.after.as_str()),
            ("", false, "块")
        );
        assert_eq!(Template::parse("{amount}和{amount}"), None);
    }

    #[test]
    fn script_is_the_template_around_the_reading_rules() {
        let t = Template::parse("微信收款{amount}元，谢谢").unwrap();
        let texts: Vec<String> = script(&t, 1250)
            .iter()
            .map(|p| match p {
                Part::Clip(text) => text.to_string(),
                Part::Pause(_) => "|".to_string(),
            })
            .collect();
        assert_eq!(
            texts,
            ["微信收款", "|", "十", "二", "点", "五", "元", "|", "，谢谢"]
        );
    }
}
