//! Token-level navigation used by the rewriter: bracket matching, statement
//! ends and the extent of a unary expression (the operand of a cast).

use super::lexer::{Kind, Lexed};

pub fn match_forward(lx: &Lexed, open: usize) -> Option<usize> {
    let (o, c) = match lx.text(open) {
        "(" => ("(", ")"),
        "[" => ("[", "]"),
        "{" => ("{", "}"),
        _ => return None,
    };
    let mut depth = 0usize;
    for j in open..lx.tokens.len() {
        let t = lx.text(j);
        if t == o {
            depth += 1;
        } else if t == c {
            depth -= 1;
            if depth == 0 {
                return Some(j);
            }
        }
    }
    None
}

/// Matches `<` to its `>` inside template argument lists (brackets nest).
pub fn match_angle(lx: &Lexed, open: usize) -> Option<usize> {
    let mut depth = 0i32;
    let mut j = open;
    while j < lx.tokens.len() {
        match lx.text(j) {
            "<" => depth += 1,
            ">" => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            "(" | "[" => j = match_forward(lx, j)?,
            ";" | "{" | "}" => return None,
            _ => {}
        }
        j += 1;
    }
    None
}

/// Matches a closing `)`, `]`, `}` or `>` backwards to its opening bracket.
pub fn match_backward(lx: &Lexed, close: usize) -> Option<usize> {
    let (o, c) = match lx.text(close) {
        ")" => ("(", ")"),
        "]" => ("[", "]"),
        "}" => ("{", "}"),
        ">" => ("<", ">"),
        _ => return None,
    };
    let mut depth = 0usize;
    let mut j = close as isize;
    while j >= 0 {
        let t = lx.text(j as usize);
        if t == c {
            depth += 1;
        } else if t == o {
            depth -= 1;
            if depth == 0 {
                return Some(j as usize);
            }
        }
        j -= 1;
    }
    None
}

/// The `;` ending the statement starting at `from`, skipping nested brackets.
pub fn statement_end(lx: &Lexed, from: usize) -> Option<usize> {
    let mut j = from;
    while j < lx.tokens.len() {
        match lx.text(j) {
            ";" => return Some(j),
            "(" | "[" | "{" => j = match_forward(lx, j)?,
            "}" => return None,
            _ => {}
        }
        j += 1;
    }
    None
}

/// Splits `from..to` at commas outside brackets (angle brackets included).
pub fn split_top_level(lx: &Lexed, from: usize, to: usize) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = from;
    for j in from..to {
        match lx.text(j) {
            "(" | "[" | "{" | "<" => depth += 1,
            ")" | "]" | "}" | ">" => depth -= 1,
            "," if depth == 0 => {
                parts.push((start, j));
                start = j + 1;
            }
            _ => {}
        }
    }
    if start < to {
        parts.push((start, to));
    }
    parts
}

pub fn adjacent(lx: &Lexed, a: usize, b: usize) -> bool {
    lx.tokens[a].end == lx.tokens[b].start
}

pub fn starts_operand(lx: &Lexed, j: usize) -> bool {
    if j >= lx.tokens.len() {
        return false;
    }
    match lx.tokens[j].kind {
        Kind::Ident | Kind::Number | Kind::Str => true,
        Kind::Punct => matches!(lx.text(j), "(" | "-" | "+" | "!" | "~" | "*" | "&"),
        Kind::Directive => false,
    }
}

/// The last token of the unary expression starting at `j` (a cast operand).
/// `is_type` tells whether an identifier names a type (for nested casts).
pub fn unary_end(lx: &Lexed, mut j: usize, is_type: &dyn Fn(&str) -> bool) -> Option<usize> {
    while j < lx.tokens.len() && matches!(lx.text(j), "-" | "+" | "!" | "~" | "*" | "&") {
        j += 1;
    }
    if j >= lx.tokens.len() {
        return None;
    }
    if lx.is(j, "(")
        && lx.is_ident(j + 1)
        && is_type(lx.text(j + 1))
        && lx.is(j + 2, ")")
        && starts_operand(lx, j + 3)
    {
        return unary_end(lx, j + 3, is_type);
    }
    let mut end = match lx.tokens[j].kind {
        Kind::Ident => {
            let mut e = j;
            while lx.is(e + 1, "::") && lx.is_ident(e + 2) {
                e += 2;
            }
            if lx.is(e + 1, "<") {
                if let Some(close) = match_angle(lx, e + 1) {
                    if lx.is(close + 1, "(") {
                        e = close;
                    }
                }
            }
            e
        }
        Kind::Number | Kind::Str => j,
        Kind::Punct if lx.is(j, "(") => match_forward(lx, j)?,
        _ => return None,
    };
    loop {
        if lx.is(end + 1, "(") || lx.is(end + 1, "[") {
            end = match_forward(lx, end + 1)?;
        } else if member_access(lx, end) || postfix_step(lx, end) {
            end += 2;
        } else {
            return Some(end);
        }
    }
}

fn member_access(lx: &Lexed, end: usize) -> bool {
    (lx.is(end + 1, ".") || lx.is(end + 1, "->")) && lx.is_ident(end + 2)
}

/// Postfix `++` or `--` (lexed as two adjacent one-character tokens).
fn postfix_step(lx: &Lexed, end: usize) -> bool {
    (lx.is(end + 1, "+") && lx.is(end + 2, "+") || lx.is(end + 1, "-") && lx.is(end + 2, "-"))
        && adjacent(lx, end + 1, end + 2)
}
