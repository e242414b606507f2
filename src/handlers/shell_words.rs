//! Splitting a command line (`LLM_COMMAND`) into words like a POSIX shell, without a shell.

/// Why a command line could not be split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A `'` was opened and never closed.
    #[error("unterminated single quote")]
    UnterminatedSingleQuote,
    /// A `"` was opened and never closed.
    #[error("unterminated double quote")]
    UnterminatedDoubleQuote,
    /// The line ends with an unescaped backslash.
    #[error("trailing backslash with nothing to escape")]
    TrailingBackslash,
}

/// Splits a command line into words the way a POSIX shell would, without expanding anything.
///
/// Whitespace separates words; `'…'` is literal; inside `"…"` a backslash escapes only
/// `\ " $ `` ` and newline (otherwise it stays); outside quotes a backslash escapes the
/// next character and backslash-newline is a line continuation. `$`, `~`, globs, `|`,
/// `;`, `>` and `#` have no special meaning: no shell ever sees the result.
pub fn split_command_line(line: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut word = String::new();
    // Distinguishes "no word yet" from an empty quoted word such as `''`.
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnterminatedSingleQuote),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('\\' | '"' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(SplitError::UnterminatedDoubleQuote),
                        },
                        Some(c) => word.push(c),
                        None => return Err(SplitError::UnterminatedDoubleQuote),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err(SplitError::TrailingBackslash),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split_command_line(line).unwrap()
    }

    #[test]
    fn splits_like_a_shell() {
        assert_eq!(words("claude -p -"), ["claude", "-p", "-"]);
        assert_eq!(words("  a \t b\n c  "), ["a", "b", "c"]);
        assert_eq!(words("a 'b c' d"), ["a", "b c", "d"]);
        assert_eq!(words(r#"a "b c" d"#), ["a", "b c", "d"]);
        assert_eq!(words(r#""say \"hi\" \\ \$x \n""#), [r#"say "hi" \ $x \n"#]);
        assert_eq!(words(r"a\ b c\'d"), ["a b", "c'd"]);
        assert_eq!(words("x'y'\"z\"w"), ["xyzw"]);
        assert_eq!(words("'' \"\""), ["", ""]);
        assert_eq!(words("'it\\s' literal"), ["it\\s", "literal"]);
        assert_eq!(words("a \\\nb"), ["a", "b"]);
        assert_eq!(
            words("echo $HOME | wc > f; #x"),
            ["echo", "$HOME", "|", "wc", ">", "f;", "#x"]
        );
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(words("   "), Vec::<String>::new());
    }

    #[test]
    fn split_errors() {
        assert_eq!(split_command_line("a 'b"), Err(SplitError::UnterminatedSingleQuote));
        assert_eq!(split_command_line("a \"b"), Err(SplitError::UnterminatedDoubleQuote));
        assert_eq!(split_command_line("a \"b\\"), Err(SplitError::UnterminatedDoubleQuote));
        assert_eq!(split_command_line("a\\"), Err(SplitError::TrailingBackslash));
    }
}
