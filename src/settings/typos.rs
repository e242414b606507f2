//! Environment variables that look like ours but are not: `GITHUB_SECRET` meant as
//! `GITHUB_WEBHOOK_SECRET`, `ADMIN_SECRETS` as `ADMIN_SECRET`. Such a typo leaves a secret
//! unset without a word, so start-up warns, naming the variable and the one meant (never
//! the value).

use crate::domain::spelling;

/// Names read from the environment besides the flags' ([`super::ENV_VARS`]).
const OTHER_NAMES: &[&str] = &["RUST_LOG"];

/// Shorter known names are left out of the edit-distance match: `HOST`, `PORT` and the
/// like sit one edit away from too many unrelated variables (`POST`, `PATH`).
const MIN_EDIT_MATCH_LEN: usize = 8;

/// Each variable of `names` that is not ours but looks like one of ours, with the name meant.
pub fn misspelled<I: IntoIterator<Item = String>>(names: I) -> Vec<(String, &'static str)> {
    let known: Vec<&'static str> = super::ENV_VARS.iter().chain(OTHER_NAMES).copied().collect();
    let mut found: Vec<(String, &'static str)> = names
        .into_iter()
        .filter(|name| !known.contains(&name.as_str()))
        .filter_map(|name| meant(&name, &known).map(|m| (name, m)))
        .collect();
    found.sort();
    found
}

/// The known name `name` was probably meant to be.
fn meant(name: &str, known: &[&'static str]) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    if let Some(k) = known.iter().find(|k| **k == upper) {
        return Some(k);
    }
    if upper.len() >= MIN_EDIT_MATCH_LEN {
        let long: Vec<&'static str> = known
            .iter()
            .copied()
            .filter(|k| k.len() >= MIN_EDIT_MATCH_LEN)
            .collect();
        if let Some(k) = spelling::closest_by_edits(&upper, &long) {
            return Some(k);
        }
    }
    // A word left out: the same first and last words, every word of ours (`GITHUB_SECRET`).
    let words: Vec<&str> = upper.split('_').collect();
    if words.len() < 2 {
        return None;
    }
    let (first, last) = (words[0], words[words.len() - 1]);
    let same_ends: Vec<&'static str> = known
        .iter()
        .copied()
        .filter(|k| k.split('_').next() == Some(first) && k.rsplit('_').next() == Some(last))
        .collect();
    spelling::closest_by_words(&upper, &same_ends, '_')
}

/// Logs one warning per misspelled variable of the process environment.
pub fn warn_misspelled_environment() {
    let names = std::env::vars_os().filter_map(|(k, _)| k.into_string().ok());
    for (name, meant) in misspelled(names) {
        tracing::warn!(
            variable = %name,
            meant,
            "environment variable {name} is not one switchyard reads; did you mean {meant}? (it is ignored)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(names: &[&str]) -> Vec<(String, &'static str)> {
        misspelled(names.iter().map(|s| s.to_string()))
    }

    #[test]
    fn typos_of_our_names_are_found_with_the_name_meant() {
        assert_eq!(
            check(&[
                "GITHUB_SECRET",
                "ADMIN_SECRETS",
                "ingress_secret",
                "STRIPE_SECRET",
                "DATABSE_URL",
                "OPENAI_KEY",
            ]),
            vec![
                ("ADMIN_SECRETS".to_string(), "ADMIN_SECRET"),
                ("DATABSE_URL".to_string(), "DATABASE_URL"),
                ("GITHUB_SECRET".to_string(), "GITHUB_WEBHOOK_SECRET"),
                ("OPENAI_KEY".to_string(), "OPENAI_API_KEY"),
                ("STRIPE_SECRET".to_string(), "STRIPE_WEBHOOK_SECRET"),
                ("ingress_secret".to_string(), "INGRESS_SECRET"),
            ]
        );
    }

    #[test]
    fn ours_and_everyday_variables_pass() {
        let common = [
            "PATH",
            "HOME",
            "HOSTNAME",
            "POST",
            "PWD",
            "OLDPWD",
            "LANG",
            "TERM",
            "SHELL",
            "USER",
            "LOGNAME",
            "GITHUB_TOKEN",
            "RUST_BACKTRACE",
            "CARGO_HOME",
            "RUSTUP_HOME",
            "HTTP_PROXY",
            "LS_COLORS",
            "SSH_AUTH_SOCK",
            "XDG_RUNTIME_DIR",
            "TEST_DATABASE_URL",
            "CLAUDE_CODE_USE_BEDROCK",
            "TZ",
            "ADMIN_SECRET",
            "RUST_LOG",
            "LLM_MODEL",
            "DISPLAY",
            "EDITOR",
            "PAGER",
            "TMPDIR",
        ];
        assert_eq!(check(&common), vec![]);
    }
}
