//! A C++ tokenizer for preprocessed MSL. Tokens keep their byte span (the
//! rewriter edits the original text) and their line in the original file,
//! which it tracks through the preprocessor's `# N "file"` line markers.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ident,
    Number,
    Str,
    Punct,
    Directive,
}

#[derive(Clone, Copy, Debug)]
pub struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
    pub line: u32,
    pub file: u32,
}

pub struct Lexed<'a> {
    pub text: &'a str,
    pub tokens: Vec<Token>,
    pub files: Vec<String>,
}

impl<'a> Lexed<'a> {
    pub fn text(&self, i: usize) -> &'a str {
        let t = &self.tokens[i];
        &self.text[t.start..t.end]
    }

    pub fn is(&self, i: usize, s: &str) -> bool {
        i < self.tokens.len() && self.text(i) == s
    }

    pub fn is_ident(&self, i: usize) -> bool {
        i < self.tokens.len() && self.tokens[i].kind == Kind::Ident
    }

    pub fn file_of(&self, i: usize) -> &str {
        let t = &self.tokens[i.min(self.tokens.len().saturating_sub(1))];
        self.files
            .get(t.file as usize)
            .map(String::as_str)
            .unwrap_or("<source>")
    }

    pub fn line_of(&self, i: usize) -> u32 {
        self.tokens.get(i).map(|t| t.line).unwrap_or(0)
    }
}

/// Parses `# 12 "file.metal" 1 2` or `#line 12 "file.metal"`: the line number
/// of the next line and the file name.
fn line_marker(directive: &str) -> Option<(u32, Option<String>)> {
    let rest = directive.strip_prefix('#')?.trim_start();
    let rest = rest
        .strip_prefix("line")
        .map(str::trim_start)
        .unwrap_or(rest);
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if digits.is_empty() {
        return None;
    }
    let line: u32 = digits.parse().ok()?;
    let after = rest[digits.len()..].trim_start();
    let file = after.strip_prefix('"').and_then(|s| {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return Some(out),
                '\\' => out.push(chars.next()?),
                c => out.push(c),
            }
        }
        None
    });
    Some((line, file))
}

pub fn lex<'a>(text: &'a str, default_file: &str) -> Lexed<'a> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut files = vec![default_file.to_string()];
    let mut file = 0u32;
    let mut line = 1u32;
    let mut at_line_start = true;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'\n' {
            line += 1;
            at_line_start = true;
            i += 1;
            continue;
        }
        if c == b' ' || c == b'\t' || c == b'\r' || c == 0x0c || c == 0x0b {
            i += 1;
            continue;
        }
        if c == b'\\' && i + 1 < bytes.len() && (bytes[i + 1] == b'\n' || bytes[i + 1] == b'\r') {
            i += 1;
            continue;
        }
        if c == b'/' && i + 1 < bytes.len() && bytes[i + 1] == b'/' {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && i + 1 < bytes.len() && bytes[i + 1] == b'*' {
            i += 2;
            while i < bytes.len()
                && !(bytes[i] == b'*' && i + 1 < bytes.len() && bytes[i + 1] == b'/')
            {
                if bytes[i] == b'\n' {
                    line += 1;
                }
                i += 1;
            }
            i = (i + 2).min(bytes.len());
            continue;
        }
        let start = i;
        let tok_line = line;
        if c == b'#' && at_line_start {
            // A directive runs to the end of the line (with continuations).
            while i < bytes.len() && bytes[i] != b'\n' {
                if bytes[i] == b'\\' && i + 1 < bytes.len() && bytes[i + 1] == b'\n' {
                    i += 2;
                    line += 1;
                    continue;
                }
                i += 1;
            }
            tokens.push(Token {
                kind: Kind::Directive,
                start,
                end: i,
                line: tok_line,
                file,
            });
            if let Some((n, name)) = line_marker(&text[start..i]) {
                if let Some(name) = name {
                    file = match files.iter().position(|f| *f == name) {
                        Some(p) => p as u32,
                        None => {
                            files.push(name);
                            (files.len() - 1) as u32
                        }
                    };
                }
                // The newline ending the directive moves to line n.
                line = n.saturating_sub(1);
            }
            continue;
        }
        at_line_start = false;
        let kind;
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'$')
            {
                i += 1;
            }
            kind = Kind::Ident;
        } else if c.is_ascii_digit()
            || (c == b'.' && i + 1 < bytes.len() && bytes[i + 1].is_ascii_digit())
        {
            let hex =
                c == b'0' && i + 1 < bytes.len() && (bytes[i + 1] == b'x' || bytes[i + 1] == b'X');
            i += 1;
            while i < bytes.len() {
                let b = bytes[i];
                let sign_after_exponent = (b == b'+' || b == b'-')
                    && (matches!(bytes[i - 1], b'p' | b'P')
                        || (!hex && matches!(bytes[i - 1], b'e' | b'E')));
                if b.is_ascii_alphanumeric()
                    || b == b'_'
                    || b == b'.'
                    || b == b'\''
                    || sign_after_exponent
                {
                    i += 1;
                } else {
                    break;
                }
            }
            kind = Kind::Number;
        } else if c == b'"' || c == b'\'' {
            i += 1;
            while i < bytes.len() && bytes[i] != c && bytes[i] != b'\n' {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(bytes.len());
            kind = Kind::Str;
        } else {
            let two = if i + 1 < bytes.len() {
                &text[i..i + 2]
            } else {
                ""
            };
            i += if two == "::" || two == "->" {
                2
            } else {
                text[i..].chars().next().map(char::len_utf8).unwrap_or(1)
            };
            kind = Kind::Punct;
        }
        tokens.push(Token {
            kind,
            start,
            end: i,
            line: tok_line,
            file,
        });
    }
    Lexed {
        text,
        tokens,
        files,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_lines_follow_line_markers() {
        let src = "# 10 \"k.metal\"\nfloat4 x = 1.0h; // c\n/* a\n b */ y->z::w 1e-3f 0x1p-2\n";
        let l = lex(src, "<src>");
        let texts: Vec<&str> = (0..l.tokens.len()).map(|i| l.text(i)).collect();
        assert_eq!(
            texts,
            [
                "# 10 \"k.metal\"",
                "float4",
                "x",
                "=",
                "1.0h",
                ";",
                "y",
                "->",
                "z",
                "::",
                "w",
                "1e-3f",
                "0x1p-2"
            ]
        );
        assert_eq!(l.file_of(1), "k.metal");
        assert_eq!(l.line_of(1), 10);
        assert_eq!(l.line_of(6), 12);
    }
}
