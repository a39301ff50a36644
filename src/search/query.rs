//! The user-facing query syntax: words (all must match), "exact phrases",
//! prefix*, and -exclusion (of a word, phrase or prefix). Anything else is
//! a clear error, never a panic.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    Word(String),
    Phrase(String),
    Prefix(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    pub include: Vec<Clause>,
    pub exclude: Vec<Clause>,
}

pub const MAX_QUERY_CHARS: usize = 500;
pub const MAX_CLAUSES: usize = 32;
pub const MIN_PREFIX_CHARS: usize = 2;

pub fn parse(q: &str) -> Result<Parsed, String> {
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(format!("q must be at most {MAX_QUERY_CHARS} characters"));
    }
    let mut out = Parsed::default();
    let chars: Vec<char> = q.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_whitespace() {
            i += 1;
            continue;
        }
        let mut negate = false;
        if chars[i] == '-' {
            negate = true;
            i += 1;
            if i >= chars.len() || chars[i].is_whitespace() {
                return Err("a '-' must be followed by the word or phrase to exclude".into());
            }
        }
        let clause = if chars[i] == '"' {
            let start = i + 1;
            let Some(len) = chars[start..].iter().position(|&c| c == '"') else {
                return Err("a quoted phrase is missing its closing quote".into());
            };
            let phrase: String = chars[start..start + len].iter().collect();
            i = start + len + 1;
            if phrase.trim().is_empty() {
                return Err("a quoted phrase must not be empty".into());
            }
            Clause::Phrase(phrase.trim().to_string())
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && chars[i] != '"' {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if let Some(prefix) = word.strip_suffix('*') {
                if prefix.contains('*') {
                    return Err(format!("{word:?}: '*' may only end a word"));
                }
                if prefix.chars().filter(|c| c.is_alphanumeric()).count() < MIN_PREFIX_CHARS {
                    return Err(format!(
                        "{word:?}: a prefix needs at least {MIN_PREFIX_CHARS} letters or digits before '*'"
                    ));
                }
                Clause::Prefix(prefix.to_string())
            } else if word.contains('*') {
                return Err(format!("{word:?}: '*' may only end a word"));
            } else {
                Clause::Word(word)
            }
        };
        if negate {
            out.exclude.push(clause);
        } else {
            out.include.push(clause);
        }
        if out.include.len() + out.exclude.len() > MAX_CLAUSES {
            return Err(format!(
                "a query may have at most {MAX_CLAUSES} words and phrases"
            ));
        }
    }
    if out.include.is_empty() {
        return Err(if out.exclude.is_empty() {
            "q must contain at least one word to search for".into()
        } else {
            "a query needs at least one word to look for besides the exclusions".into()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        let p = parse(r#"rust "borrow checker" tok* -python -"java applet""#).unwrap();
        assert_eq!(
            p.include,
            vec![
                Clause::Word("rust".into()),
                Clause::Phrase("borrow checker".into()),
                Clause::Prefix("tok".into())
            ]
        );
        assert_eq!(
            p.exclude,
            vec![
                Clause::Word("python".into()),
                Clause::Phrase("java applet".into())
            ]
        );
        assert_eq!(parse("  a  ").unwrap().include.len(), 1);
        assert_eq!(
            parse("snake_case").unwrap().include,
            vec![Clause::Word("snake_case".into())]
        );
    }

    #[test]
    fn errors() {
        for bad in [
            "", "   ", "\"open", "-", "-x", "t*", "*", "a*b", "\"\"", "- x",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(parse(&"a ".repeat(40)).is_err());
        assert!(parse(&"x".repeat(600)).is_err());
    }
}
