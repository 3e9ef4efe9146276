//! Attacker-controlled text in logs and metric properties (a path tenant, a user agent, a header,
//! a field path), cut to a bounded length, so that one request cannot write an unbounded log line
//! or metric document.

use std::borrow::Cow;

/// The most bytes of one such field that reach a log line or a metric property.
pub const MAX_LOGGED_BYTES: usize = 256;

/// `text`, or its first [`MAX_LOGGED_BYTES`] bytes at most (cut between characters, never inside
/// one) followed by `…[N bytes]`, `N` being the whole text's length.
pub fn bounded(text: &str) -> Cow<'_, str> {
    if text.len() <= MAX_LOGGED_BYTES {
        return Cow::Borrowed(text);
    }
    let mut end = MAX_LOGGED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…[{} bytes]", &text[..end], text.len()))
}

/// [`bounded`] for an optional field.
pub fn bounded_opt(text: Option<&str>) -> Option<Cow<'_, str>> {
    text.map(bounded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_as_it_is() {
        assert!(matches!(bounded("124"), Cow::Borrowed("124")));
        let exactly = "a".repeat(MAX_LOGGED_BYTES);
        assert_eq!(bounded(&exactly), exactly.as_str());
        assert_eq!(bounded_opt(None), None);
    }

    #[test]
    fn long_text_is_cut_and_says_how_long_it_was() {
        let long = "a".repeat(10_000);
        let cut = bounded(&long);
        assert_eq!(cut, format!("{}…[10000 bytes]", "a".repeat(MAX_LOGGED_BYTES)));
        assert!(cut.len() < MAX_LOGGED_BYTES + 20);
    }

    #[test]
    fn chinese_text_is_cut_between_characters() {
        // Three bytes a character: 256 is not a multiple of 3, so the cut falls back to 255.
        let long = "租户活动".repeat(100);
        let cut = bounded(&long);
        let head = cut.split('…').next().unwrap();
        assert_eq!(head.len(), 255);
        assert_eq!(head.chars().count(), 85);
        assert!(long.starts_with(head));
        assert!(cut.ends_with("…[1200 bytes]"), "{cut}");
        // Whatever the offset of the multi-byte characters, the cut is valid UTF-8 and bounded.
        for prefix in 0..4 {
            let text = format!("{}{}", "x".repeat(prefix), "中".repeat(200));
            let cut = bounded(&text);
            let head = cut.split('…').next().unwrap();
            assert!(
                head.len() <= MAX_LOGGED_BYTES && head.len() > MAX_LOGGED_BYTES - 3,
                "{prefix}"
            );
            assert!(text.starts_with(head));
        }
    }
}
