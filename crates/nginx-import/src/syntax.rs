//! Syntax: tokens into directives — `name args…;` or `name args… { … }` —
//! each with its line, the tree nginx's own parser builds.

use std::fmt::Write as _;

use crate::error::SyntaxError;
use crate::lex::{tokenize, Token};

/// Deepest block nesting accepted. Real files nest three or four deep; the
/// limit keeps a hostile file from exhausting the stack of the recursive parser.
pub(crate) const MAX_DEPTH: usize = 64;

/// One nginx directive: `name args…;` or `name args… { block }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    /// The directive's name (`location`, `proxy_pass`, …).
    pub(crate) name: String,
    /// Its arguments, quotes removed and escapes resolved as nginx does.
    pub(crate) args: Vec<String>,
    /// Line of the name, counting from 1.
    pub(crate) line: usize,
    /// The directives inside `{ }`, for a block directive.
    pub(crate) block: Option<Vec<Directive>>,
}

impl Directive {
    /// `name args…` as written (quotes aside), shortened for messages.
    pub(crate) fn text(&self) -> String {
        let mut s = self.name.clone();
        for a in &self.args {
            s.push(' ');
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"') {
                let _ = write!(s, "{a:?}");
            } else {
                s.push_str(a);
            }
        }
        if s.chars().count() > 80 {
            s = s.chars().take(77).collect::<String>() + "...";
        }
        s
    }

    pub(crate) fn block(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or(&[])
    }
}

/// Parses nginx configuration text into its directives, each with its line.
pub(crate) fn parse(text: &str) -> Result<Vec<Directive>, SyntaxError> {
    let tokens = tokenize(text)?;
    let mut pos = 0;
    parse_block(&tokens, &mut pos, None, 0)
}

fn parse_block(
    tokens: &[(Token, usize)],
    pos: &mut usize,
    opened_at: Option<usize>,
    depth: usize,
) -> Result<Vec<Directive>, SyntaxError> {
    let err = |line: usize, message: String| Err(SyntaxError { line, message });
    let mut out = Vec::new();
    loop {
        let Some((token, line)) = tokens.get(*pos) else {
            return match opened_at {
                None => Ok(out),
                Some(l) => err(
                    l,
                    "unexpected end of file: the block opened here is never closed with `}`".into(),
                ),
            };
        };
        *pos += 1;
        let name = match token {
            Token::Word(w) => w,
            Token::Close if opened_at.is_some() => return Ok(out),
            Token::Close => return err(*line, "unexpected `}`: no block is open".into()),
            Token::Semicolon => return err(*line, "unexpected `;`".into()),
            Token::Open => return err(*line, "unexpected `{`: a block needs a name".into()),
        };
        let mut args = Vec::new();
        loop {
            match tokens.get(*pos) {
                None => {
                    return err(
                        *line,
                        format!("unexpected end of file: `{name}` is not ended by `;` or a block"),
                    )
                }
                Some((Token::Word(w), _)) => {
                    *pos += 1;
                    args.push(w.clone());
                }
                Some((Token::Semicolon, _)) => {
                    *pos += 1;
                    out.push(Directive {
                        name: name.clone(),
                        args,
                        line: *line,
                        block: None,
                    });
                    break;
                }
                Some((Token::Open, l)) => {
                    *pos += 1;
                    if depth >= MAX_DEPTH {
                        return err(*l, format!("blocks nested more than {MAX_DEPTH} deep"));
                    }
                    let block = parse_block(tokens, pos, Some(*line), depth + 1)?;
                    out.push(Directive {
                        name: name.clone(),
                        args,
                        line: *line,
                        block: Some(block),
                    });
                    break;
                }
                Some((Token::Close, l)) => {
                    return err(
                        *l,
                        format!("unexpected `}}`: `{name}` (line {line}) is missing its `;`"),
                    )
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks nest, and every directive knows its line.
    #[test]
    fn blocks_and_lines() {
        let d = parse("http {\n  server {\n    listen 80;\n  }\n}\n").unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].name.as_str(), d[0].line), ("http", 1));
        let server = &d[0].block()[0];
        assert_eq!((server.name.as_str(), server.line), ("server", 2));
        let listen = &server.block()[0];
        assert_eq!(
            (listen.args[0].as_str(), listen.line, listen.block.is_none()),
            ("80", 3, true)
        );
    }

    /// Broken syntax is an error at the line that explains it.
    #[test]
    fn parse_errors_have_lines() {
        for (text, line, what) in [
            ("http {\n  server {\n  }\n", 1, "never closed"),
            ("a;\n}\n", 2, "no block is open"),
            ("a;\nb \"x;\n\n", 2, "unterminated string"),
            ("a\n}", 2, "missing its `;`"),
            ("a b", 1, "not ended by"),
            ("a;\n;", 2, "unexpected `;`"),
            ("{ }", 1, "needs a name"),
            ("a \"b\"c;", 1, "after a quoted string"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e:?}");
            assert!(e.message.contains(what), "{text:?}: {e:?}");
        }
        let deep = "a {".repeat(MAX_DEPTH + 2);
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
    }
}
