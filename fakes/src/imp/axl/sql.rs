//! The SQL subset `executeSQLQuery` accepts (the module doc of [`super`] gives the grammar):
//! a tokenizer, a `SELECT … FROM enduser` parser and the `LIKE` match of search criteria.

use super::service::{COLUMNS, value_of};

/// SQL `LIKE`-style match where `%` matches any run of characters (case-insensitive, as AXL
/// search criteria are).
pub(super) fn like(value: &str, pattern: &str) -> bool {
    let v = value.to_ascii_lowercase();
    let p = pattern.to_ascii_lowercase();
    let parts: Vec<&str> = p.split('%').collect();
    if parts.len() == 1 {
        return v == p;
    }
    let mut rest = v.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// A parsed `SELECT … FROM enduser`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Select {
    pub(super) skip: usize,
    pub(super) first: Option<usize>,
    pub(super) columns: Vec<&'static str>,
    pub(super) conds: Vec<Cond>,
    pub(super) order_by: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Cond {
    Eq(&'static str, String),
    IsNull(&'static str, bool),
}

impl Cond {
    pub(super) fn matches(&self, row: &[(&'static str, String)]) -> bool {
        match self {
            Cond::Eq(c, v) => value_of(row, c).eq_ignore_ascii_case(v),
            Cond::IsNull(c, want_null) => value_of(row, c).is_empty() == *want_null,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Word(String),
    Str(String),
    Punct(char),
}

pub(super) const SYNTAX: &str = "A syntax error has occurred.";

fn tokenize(sql: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        s.push('\'');
                    }
                    Some('\'') => break,
                    Some(ch) => s.push(ch),
                    None => return Err(SYNTAX.into()),
                }
            }
            out.push(Tok::Str(s));
        } else if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
            let mut w = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_ascii_alphanumeric() || ch == '_' || ch == '.' {
                    w.push(ch);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Tok::Word(w));
        } else if matches!(c, ',' | '*' | '=' | ';') {
            chars.next();
            out.push(Tok::Punct(c));
        } else {
            return Err(SYNTAX.into());
        }
    }
    Ok(out)
}

fn column(word: &str) -> Result<&'static str, String> {
    let name = word.rsplit('.').next().unwrap_or(word).to_ascii_lowercase();
    COLUMNS
        .iter()
        .find(|c| **c == name)
        .copied()
        .ok_or_else(|| {
            format!("Column ({name}) not found in any table in the query (or SLV is undefined).")
        })
}

pub(super) fn parse_select(sql: &str) -> Result<Select, String> {
    let toks = tokenize(sql)?;
    let mut i = 0;
    let kw =
        |i: usize, k: &str| matches!(toks.get(i), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k));
    let num = |i: usize| match toks.get(i) {
        Some(Tok::Word(w)) => w.parse::<usize>().map_err(|_| SYNTAX.to_string()),
        _ => Err(SYNTAX.to_string()),
    };
    if !kw(i, "select") {
        return Err("Only SELECT statements are allowed in executeSQLQuery".into());
    }
    i += 1;
    let mut q = Select {
        skip: 0,
        first: None,
        columns: Vec::new(),
        conds: Vec::new(),
        order_by: None,
    };
    if kw(i, "skip") {
        q.skip = num(i + 1)?;
        i += 2;
    }
    if kw(i, "first") || kw(i, "limit") {
        q.first = Some(num(i + 1)?);
        i += 2;
    }
    if toks.get(i) == Some(&Tok::Punct('*')) {
        q.columns = COLUMNS.to_vec();
        i += 1;
    } else {
        loop {
            match toks.get(i) {
                Some(Tok::Word(w)) if !w.eq_ignore_ascii_case("from") => {
                    q.columns.push(column(w)?);
                    i += 1;
                }
                _ => return Err(SYNTAX.into()),
            }
            if toks.get(i) == Some(&Tok::Punct(',')) {
                i += 1;
            } else {
                break;
            }
        }
    }
    if !kw(i, "from") {
        return Err(SYNTAX.into());
    }
    i += 1;
    match toks.get(i) {
        Some(Tok::Word(t)) if t.eq_ignore_ascii_case("enduser") => i += 1,
        Some(Tok::Word(t)) => {
            return Err(format!("The specified table ({t}) is not in the database."));
        }
        _ => return Err(SYNTAX.into()),
    }
    // Optional table alias.
    if let Some(Tok::Word(w)) = toks.get(i)
        && !["where", "order"].iter().any(|k| w.eq_ignore_ascii_case(k))
    {
        i += 1;
    }
    if kw(i, "where") {
        i += 1;
        loop {
            let Some(Tok::Word(c)) = toks.get(i) else {
                return Err(SYNTAX.into());
            };
            let col = column(c)?;
            i += 1;
            if toks.get(i) == Some(&Tok::Punct('=')) {
                let Some(Tok::Str(v)) = toks.get(i + 1) else {
                    return Err(SYNTAX.into());
                };
                q.conds.push(Cond::Eq(col, v.clone()));
                i += 2;
            } else if kw(i, "is") && kw(i + 1, "null") {
                q.conds.push(Cond::IsNull(col, true));
                i += 2;
            } else if kw(i, "is") && kw(i + 1, "not") && kw(i + 2, "null") {
                q.conds.push(Cond::IsNull(col, false));
                i += 3;
            } else {
                return Err(SYNTAX.into());
            }
            if kw(i, "and") {
                i += 1;
            } else {
                break;
            }
        }
    }
    if kw(i, "order") && kw(i + 1, "by") {
        let Some(Tok::Word(c)) = toks.get(i + 2) else {
            return Err(SYNTAX.into());
        };
        q.order_by = Some(column(c)?);
        i += 3;
    }
    if toks.get(i) == Some(&Tok::Punct(';')) {
        i += 1;
    }
    if i != toks.len() {
        return Err(SYNTAX.into());
    }
    Ok(q)
}
