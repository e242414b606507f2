//! "Did you mean …?": the known name a misspelled one was most likely meant to be.

/// The Levenshtein distance between `a` and `b`, counted in characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb)).min(above + 1).min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The known name within a typo's reach of `word`: at most one edit per five characters
/// (and at least one), the nearest first, ties to the earlier name.
pub fn closest_by_edits<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 5).max(1);
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= limit && *k != word)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The shortest known name whose `sep`-separated words include every word of `word`
/// (`GITHUB_SECRET` → `GITHUB_WEBHOOK_SECRET`, `target` → `handler_target`).
pub fn closest_by_words<'a>(word: &str, known: &[&'a str], sep: char) -> Option<&'a str> {
    let words: Vec<&str> = word.split(sep).filter(|w| !w.is_empty()).collect();
    if words.is_empty() {
        return None;
    }
    known
        .iter()
        .filter(|k| **k != word && words.iter().all(|w| k.split(sep).any(|kw| kw == *w)))
        .min_by_key(|k| k.len())
        .copied()
}

/// What to suggest for an unknown `word`: the closest by edits, else by words.
pub fn suggestion<'a>(word: &str, known: &[&'a str], sep: char) -> Option<&'a str> {
    closest_by_edits(word, known).or_else(|| closest_by_words(word, known, sep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("handler_mod", "handler_mode"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn suggestions() {
        let keys = ["provider", "action", "handler_mode", "handler_target", "enabled"];
        assert_eq!(suggestion("handler_mod", &keys, '_'), Some("handler_mode"));
        assert_eq!(suggestion("provder", &keys, '_'), Some("provider"));
        assert_eq!(suggestion("target", &keys, '_'), Some("handler_target"));
        assert_eq!(suggestion("colour", &keys, '_'), None);
        assert_eq!(suggestion("enabled", &keys, '_'), None, "a known name is no typo");
    }
}
