//! Amounts in Chinese words, read the way payment speakers read them ("十二点五", "两万").
//!
//! Money arrives as whole fen (`u64`); nothing here goes through floating point, so 0.1 + 0.2
//! is never "零点三零零零零零零零零零零零零零零零零零四".

/// One spoken word of an amount: the pieces a payment speaker composes amounts from. The
/// reading rules below produce a sequence of these, and everything that says an amount
/// (the whole-phrase text, the composed voice) is made from that one sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Word {
    /// 零 … 九.
    Digit(u8),
    /// 两, the 2 said before 百, 千, 万 or 亿 at the start of an amount.
    Liang,
    Shi,
    Bai,
    Qian,
    Wan,
    Yi,
    /// 点, between yuan and jiao.
    Dian,
}

const DIGITS: [&str; 10] = ["零", "一", "二", "三", "四", "五", "六", "七", "八", "九"];
/// Place words inside a group of four digits, from the ones up (none for the ones).
const PLACES: [Option<Word>; 4] = [None, Some(Word::Shi), Some(Word::Bai), Some(Word::Qian)];

impl Word {
    /// Every word an amount can contain, each once: the clips a voice bank needs.
    pub const ALL: [Word; 17] = [
        Word::Digit(0),
        Word::Digit(1),
        Word::Digit(2),
        Word::Digit(3),
        Word::Digit(4),
        Word::Digit(5),
        Word::Digit(6),
        Word::Digit(7),
        Word::Digit(8),
        Word::Digit(9),
        Word::Liang,
        Word::Shi,
        Word::Bai,
        Word::Qian,
        Word::Wan,
        Word::Yi,
        Word::Dian,
    ];

    /// The word in Chinese.
    pub fn text(self) -> &'static str {
        match self {
            Word::Digit(d) => DIGITS[usize::from(d % 10)],
            Word::Liang => "两",
            Word::Shi => "十",
            Word::Bai => "百",
            Word::Qian => "千",
            Word::Wan => "万",
            Word::Yi => "亿",
            Word::Dian => "点",
        }
    }

    /// The ASCII file name (without extension) of the word's clip in a voice pack.
    pub fn file_stem(self) -> &'static str {
        const DIGIT_STEMS: [&str; 10] = [
            "digit-0", "digit-1", "digit-2", "digit-3", "digit-4", "digit-5", "digit-6", "digit-7",
            "digit-8", "digit-9",
        ];
        match self {
            Word::Digit(d) => DIGIT_STEMS[usize::from(d % 10)],
            Word::Liang => "liang",
            Word::Shi => "shi",
            Word::Bai => "bai",
            Word::Qian => "qian",
            Word::Wan => "wan",
            Word::Yi => "yi",
            Word::Dian => "dian",
        }
    }
}

/// The amount `fen` in words: 1250 → 十二点五, 1 → 零点零一, 2_000_000 → 两万.
///
/// Rules, as payment speakers read amounts:
/// - the yuan part in the usual grouping by 万 and 亿, with one 零 for each run of zeros
///   between two spoken digits (一百零五, 一万零一百, 一亿零五);
/// - 十 alone at the very start (十, 十二, 十万), 一十 elsewhere (一百一十);
/// - 两 for a leading 2 that stands before 百, 千, 万 or 亿 (两百, 两千, 两万, 两百万),
///   二 everywhere else (二十, 十二, 二, 一千二百);
/// - jiao and fen after 点, trailing zeros dropped (十点五, 零点零一); whole yuan have no 点.
pub fn amount_words(fen: u64) -> String {
    amount_tokens(fen).into_iter().map(Word::text).collect()
}

/// The amount `fen` as the sequence of words it is said with ([`amount_words`] joins them).
pub fn amount_tokens(fen: u64) -> Vec<Word> {
    let yuan = fen / 100;
    let jiao = (fen / 10 % 10) as u8;
    let cents = (fen % 10) as u8;
    let mut words = yuan_words(yuan);
    if jiao != 0 || cents != 0 {
        words.push(Word::Dian);
        words.push(Word::Digit(jiao));
        if cents != 0 {
            words.push(Word::Digit(cents));
        }
    }
    words
}

/// Whole yuan in words (0 → 零).
fn yuan_words(yuan: u64) -> Vec<Word> {
    if yuan == 0 {
        return vec![Word::Digit(0)];
    }
    let mut words = Vec::new();
    big_number(yuan, &mut words);
    polish(&mut words);
    words
}

/// Appends `n` (> 0) in words, splitting at 亿 and 万 recursively so that amounts
/// beyond 9999亿 still read (一万亿).
fn big_number(n: u64, out: &mut Vec<Word>) {
    const YI: u64 = 100_000_000;
    const WAN: u64 = 10_000;
    let (unit, word) = if n >= YI {
        (YI, Word::Yi)
    } else if n >= WAN {
        (WAN, Word::Wan)
    } else {
        group(n, out);
        return;
    };
    big_number(n / unit, out);
    out.push(word);
    let rest = n % unit;
    if rest == 0 {
        return;
    }
    // A gap of zeros between the unit and the rest is read as one 零: 一万零五, 一亿零一万.
    if rest < unit / 10 {
        out.push(Word::Digit(0));
    }
    big_number(rest, out);
}

/// Appends a group of up to four digits (1..=9999) with its place words and inner zeros.
fn group(n: u64, out: &mut Vec<Word>) {
    let digits = [n / 1000 % 10, n / 100 % 10, n / 10 % 10, n % 10];
    let first = digits.iter().position(|&d| d != 0).unwrap_or(3);
    let last = digits.iter().rposition(|&d| d != 0).unwrap_or(3);
    let mut pending_zero = false;
    for (i, &d) in digits.iter().enumerate().take(last + 1).skip(first) {
        if d == 0 {
            pending_zero = true;
            continue;
        }
        if pending_zero {
            out.push(Word::Digit(0));
            pending_zero = false;
        }
        out.push(Word::Digit(d as u8));
        out.extend(PLACES[3 - i]);
    }
}

/// The two spoken exceptions that depend on the whole number, not on one group:
/// a leading 一十 is said 十, and a leading 二 before 百/千/万/亿 is said 两.
fn polish(words: &mut Vec<Word>) {
    if words.starts_with(&[Word::Digit(1), Word::Shi]) {
        words.remove(0);
    }
    if let [
        Word::Digit(2),
        Word::Bai | Word::Qian | Word::Wan | Word::Yi,
        ..,
    ] = words[..]
    {
        words[0] = Word::Liang;
    }
}

/// The announcement text: `template` with `{amount}` replaced by the amount in words.
pub fn announcement(template: &str, fen: u64) -> String {
    template.replace("{amount}", &amount_words(fen))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (fen, words): the brief's examples first, then the corners of 零, 两, 十 and 亿.
    const TABLE: &[(u64, &str)] = &[
        (1250, "十二点五"),
        (1, "零点零一"),
        (10500, "一百零五"),
        (100500, "一千零五"),
        (2000000, "两万"),
        (1000, "十"),
        (0, "零"),
        (10, "零点一"),
        (10000000, "十万"),
        (123456789, "一百二十三万四千五百六十七点八九"),
        (100, "一"),
        (200, "二"),
        (205, "二点零五"),
        (1200, "十二"),
        (2000, "二十"),
        (2200, "二十二"),
        (20000, "两百"),
        (22000, "两百二十"),
        (200000, "两千"),
        (220000, "两千二百"),
        (120000, "一千二百"),
        (1200000, "一万二千"),
        (12000000, "十二万"),
        (20000000, "二十万"),
        (200000000, "两百万"),
        (2000000000, "两千万"),
        (20000000000, "两亿"),
        (10200000000, "一亿零二百万"),
        (11000, "一百一十"),
        (101000, "一千零一十"),
        (1001000, "一万零一十"),
        (1000100, "一万零一"),
        (1010000, "一万零一百"),
        (1100000, "一万一千"),
        (11000000, "十一万"),
        (100050000, "一百万零五百"),
        (10000000000, "一亿"),
        (10000000500, "一亿零五"),
        (10001000000, "一亿零一万"),
        (110000000000, "十一亿"),
        (100000000000000, "一万亿"),
        (100000000000100, "一万亿零一"),
        (99, "零点九九"),
        (90, "零点九"),
        (909, "九点零九"),
        (1010, "十点一"),
        (999999, "九千九百九十九点九九"),
        (1000000, "一万"),
        (1999, "十九点九九"),
        (880000, "八千八百"),
        (6666, "六十六点六六"),
        (30000300, "三十万零三"),
    ];

    #[test]
    fn words_table() {
        assert!(TABLE.len() >= 40);
        let wrong: Vec<String> = TABLE
            .iter()
            .filter(|(fen, want)| amount_words(*fen) != *want)
            .map(|(fen, want)| {
                format!(
                    "{} → {} (want {want})",
                    wechat_web::money::Yuan(*fen),
                    amount_words(*fen)
                )
            })
            .collect();
        assert!(wrong.is_empty(), "wrong readings:\n{}", wrong.join("\n"));
    }

    /// (fen, words the composer strings together): the amounts shops see most, the
    /// corners of 零 and 两, and the largest amount paysay accepts.
    const TOKENS: &[(u64, &[Word])] = {
        use Word::*;
        &[
            (1, &[Digit(0), Dian, Digit(0), Digit(1)]),
            (10, &[Digit(0), Dian, Digit(1)]),
            (50, &[Digit(0), Dian, Digit(5)]),
            (200, &[Digit(2)]),
            (1000, &[Shi]),
            (1250, &[Shi, Digit(2), Dian, Digit(5)]),
            (2000, &[Digit(2), Shi]),
            (10005, &[Digit(1), Bai, Dian, Digit(0), Digit(5)]),
            (20000, &[Liang, Bai]),
            (100005, &[Digit(1), Qian, Dian, Digit(0), Digit(5)]),
            (1001000, &[Digit(1), Wan, Digit(0), Digit(1), Shi]),
            (10000000000, &[Digit(1), Yi]),
            (crate::money::MAX_PAYMENT_FEN, &[Digit(1), Yi]),
        ]
    };

    #[test]
    fn token_sequences_are_the_words() {
        for &(fen, want) in TOKENS {
            let tokens = amount_tokens(fen);
            assert_eq!(tokens, want, "{}", wechat_web::money::Yuan(fen));
            let joined: String = tokens.iter().map(|w| w.text()).collect();
            assert_eq!(joined, amount_words(fen));
        }
        // Every word an amount uses has a clip in the bank.
        for fen in (0..2_000_000)
            .step_by(997)
            .chain(TABLE.iter().map(|(f, _)| *f))
        {
            for word in amount_tokens(fen) {
                assert!(Word::ALL.contains(&word), "{word:?}");
            }
        }
    }

    #[test]
    fn template_fills_amount() {
        assert_eq!(
            announcement("微信收款{amount}元", 1250),
            "微信收款十二点五元"
        );
        assert_eq!(announcement("收到{amount}元，谢谢", 100), "收到一元，谢谢");
    }

    #[test]
    fn large_amounts_do_not_panic_and_keep_their_units() {
        let words = amount_words(u64::MAX);
        assert!(words.contains('亿') && words.contains('点'), "{words}");
    }
}
