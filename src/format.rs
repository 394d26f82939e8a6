//! How numbers and names are shown to people, the same in the terminal and the window.

/// 1234567 → "1,234,567".
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The last `n` characters of a long name behind "…" (node names differ at their ends:
/// `/features/features.12/conv/0/Conv`); a short name as it is.
pub fn elide_start(s: &str, n: usize) -> String {
    let len = s.chars().count();
    if len <= n {
        s.to_owned()
    } else {
        format!("…{}", s.chars().skip(len - n + 1).collect::<String>())
    }
}

/// The first `n` characters of a long text followed by "…" (captions, messages).
pub fn elide_end(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!(
            "{}…",
            s.chars().take(n.saturating_sub(1)).collect::<String>()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1234567), "1,234,567");
    }

    #[test]
    fn elides_the_start_to_n_characters() {
        assert_eq!(elide_start("abc", 5), "abc");
        assert_eq!(elide_start("abcdef", 4), "…def");
        assert_eq!(elide_start("abcdef", 4).chars().count(), 4);
        assert_eq!(elide_start("ééééé", 3), "…éé");
        assert_eq!(elide_end("abcdef", 4), "abc…");
        assert_eq!(elide_end("abc", 4), "abc");
    }
}
