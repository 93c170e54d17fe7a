//! Lexing: nginx configuration text into words and the punctuation
//! `;`, `{`, `}`, each with the line it starts on, as nginx reads them.

use crate::error::SyntaxError;

/// One token of nginx configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// A word, quotes removed and escapes resolved.
    Word(String),
    /// `;`, ending a simple directive.
    Semicolon,
    /// `{`, opening a block.
    Open,
    /// `}`, closing a block.
    Close,
}

/// Splits nginx configuration text into tokens with their lines, following
/// `ngx_conf_read_token`: `#` starts a comment only at the start of a token;
/// a word ends at whitespace, `;` or `{` (but not at the `{` of `${var}`,
/// and not at `}`); a backslash takes the next character literally.
pub(crate) fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, SyntaxError> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(&c) = chars.peek() {
        match c {
            '\n' => {
                line += 1;
                chars.next();
            }
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => while chars.next_if(|&c| c != '\n').is_some() {},
            ';' | '{' | '}' => {
                chars.next();
                let t = match c {
                    ';' => Token::Semicolon,
                    '{' => Token::Open,
                    _ => Token::Close,
                };
                out.push((t, line));
            }
            '"' | '\'' => {
                let start = line;
                chars.next();
                let unterminated = || SyntaxError {
                    line: start,
                    message: format!("unterminated string: the {c} opened here is never closed"),
                };
                let mut raw = String::new();
                loop {
                    match chars.next() {
                        None => return Err(unterminated()),
                        Some('\\') => {
                            let escaped = chars.next().ok_or_else(unterminated)?;
                            if escaped == '\n' {
                                line += 1;
                            }
                            raw.push('\\');
                            raw.push(escaped);
                        }
                        Some(q) if q == c => break,
                        Some(other) => {
                            if other == '\n' {
                                line += 1;
                            }
                            raw.push(other);
                        }
                    }
                }
                // nginx wants a separator after a closing quote.
                if let Some(&next) = chars.peek() {
                    if !(next.is_whitespace() || matches!(next, ';' | '{' | ')')) {
                        return Err(SyntaxError {
                            line,
                            message: format!("unexpected {next:?} after a quoted string"),
                        });
                    }
                }
                out.push((Token::Word(unescape(&raw)), start));
            }
            _ => {
                let start = line;
                let mut raw = String::new();
                let mut after_dollar = false;
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || ch == ';' || (ch == '{' && !after_dollar) {
                        break;
                    }
                    chars.next();
                    raw.push(ch);
                    if ch == '\\' {
                        if let Some(escaped) = chars.next() {
                            if escaped == '\n' {
                                line += 1;
                            }
                            raw.push(escaped);
                        }
                        after_dollar = false;
                    } else {
                        after_dollar = ch == '$';
                    }
                }
                out.push((Token::Word(unescape(&raw)), start));
            }
        }
    }
    Ok(out)
}

/// Resolves the escapes nginx resolves in every word: `\"`, `\'`, `\\`,
/// `\t`, `\r`, `\n`. Any other backslash stays, as in nginx (regexes need it).
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut it = raw.chars().peekable();
    while let Some(c) = it.next() {
        if c == '\\' {
            let replacement = match it.peek() {
                Some(&q @ ('"' | '\'' | '\\')) => Some(q),
                Some('t') => Some('\t'),
                Some('r') => Some('\r'),
                Some('n') => Some('\n'),
                _ => None,
            };
            if let Some(r) = replacement {
                it.next();
                out.push(r);
                continue;
            }
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::parse;

    fn words(text: &str) -> Vec<(String, usize)> {
        tokenize(text)
            .unwrap()
            .into_iter()
            .filter_map(|(t, l)| match t {
                Token::Word(w) => Some((w, l)),
                _ => None,
            })
            .collect()
    }

    /// Comments run from `#` at a token's start to the end of the line; a
    /// `#` inside a word is part of it.
    #[test]
    fn comments_are_skipped_but_not_inside_words() {
        let w = words("a b#c; # comment ; {\nd;");
        assert_eq!(w, [("a".into(), 1), ("b#c".into(), 1), ("d".into(), 2)]);
    }

    /// Quotes group words, escapes resolve as nginx resolves them, and a
    /// word keeps the line it starts on.
    #[test]
    fn quotes_and_escapes() {
        let w = words("x \"a b\" 'c\\'d' \"e\\\"f\" \"g\\nh\" i\\;j \\d;\ny;");
        let got: Vec<&str> = w.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            got,
            ["x", "a b", "c'd", "e\"f", "g\nh", "i\\;j", "\\d", "y"]
        );
        assert_eq!(w.last().unwrap().1, 2);
        // A quoted string spanning lines: the next word is on the right line.
        let w = words("a \"b\nc\" d;");
        assert_eq!(w[1], ("b\nc".into(), 1));
        assert_eq!(w[2], ("d".into(), 2));
    }

    /// `${var}` does not open a block, and `}` does not end a word (both as
    /// in `ngx_conf_read_token`).
    #[test]
    fn braces_inside_words() {
        let d = parse("proxy_pass http://${backend}/x;\nreturn 200 ok};").unwrap();
        assert_eq!(d[0].args, ["http://${backend}/x"]);
        assert_eq!(d[1].args, ["200", "ok}"]);
    }
}
