//! Speech: payment amount → words → synthesized audio clip, cached on disk.

pub mod words;

pub use words::{amount_words, announcement, parse_yuan, AmountError, Yuan};
