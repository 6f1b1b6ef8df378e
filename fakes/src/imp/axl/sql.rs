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

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// The rest of a quoted string after its opening quote (`''` is a quote).
fn quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Result<String, String> {
    let mut s = String::new();
    loop {
        match chars.next() {
            Some('\'') if chars.peek() == Some(&'\'') => {
                chars.next();
                s.push('\'');
            }
            Some('\'') => return Ok(s),
            Some(ch) => s.push(ch),
            None => return Err(SYNTAX.into()),
        }
    }
}

/// A word: a keyword, a column (maybe `alias.`-prefixed) or a number.
fn word(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> String {
    let mut w = String::new();
    while let Some(&ch) = chars.peek() {
        if !is_word_char(ch) {
            break;
        }
        w.push(ch);
        chars.next();
    }
    w
}

fn tokenize(sql: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = sql.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            out.push(Tok::Str(quoted(&mut chars)?));
        } else if is_word_char(c) {
            out.push(Tok::Word(word(&mut chars)));
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
    let mut c = Cursor {
        toks: tokenize(sql)?,
        i: 0,
    };
    if !c.kw(0, "select") {
        return Err("Only SELECT statements are allowed in executeSQLQuery".into());
    }
    c.i += 1;
    let mut q = Select {
        skip: 0,
        first: None,
        columns: Vec::new(),
        conds: Vec::new(),
        order_by: None,
    };
    if c.kw(0, "skip") {
        q.skip = c.num(1)?;
        c.i += 2;
    }
    if c.kw(0, "first") || c.kw(0, "limit") {
        q.first = Some(c.num(1)?);
        c.i += 2;
    }
    q.columns = c.select_list()?;
    c.enduser_table()?;
    if c.kw(0, "where") {
        c.i += 1;
        q.conds = c.conditions()?;
    }
    if c.kw(0, "order") && c.kw(1, "by") {
        let Some(Tok::Word(col)) = c.at(2) else {
            return Err(SYNTAX.into());
        };
        q.order_by = Some(column(col)?);
        c.i += 3;
    }
    if c.at(0) == Some(&Tok::Punct(';')) {
        c.i += 1;
    }
    if c.i != c.toks.len() {
        return Err(SYNTAX.into());
    }
    Ok(q)
}

/// The tokens of a statement and the parse position. Every loop over it consumes at least one
/// token per round, so parsing is bounded by the statement's length.
struct Cursor {
    toks: Vec<Tok>,
    i: usize,
}

impl Cursor {
    fn at(&self, ahead: usize) -> Option<&Tok> {
        self.toks.get(self.i + ahead)
    }

    /// Whether the token `ahead` is the keyword `k` (case-insensitive).
    fn kw(&self, ahead: usize, k: &str) -> bool {
        matches!(self.at(ahead), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    fn num(&self, ahead: usize) -> Result<usize, String> {
        match self.at(ahead) {
            Some(Tok::Word(w)) => w.parse::<usize>().map_err(|_| SYNTAX.to_string()),
            _ => Err(SYNTAX.to_string()),
        }
    }

    /// `*` or `col, col, …`.
    fn select_list(&mut self) -> Result<Vec<&'static str>, String> {
        if self.at(0) == Some(&Tok::Punct('*')) {
            self.i += 1;
            return Ok(COLUMNS.to_vec());
        }
        let mut columns = Vec::new();
        loop {
            match self.at(0) {
                Some(Tok::Word(w)) if !w.eq_ignore_ascii_case("from") => {
                    columns.push(column(w)?);
                    self.i += 1;
                }
                _ => return Err(SYNTAX.into()),
            }
            if self.at(0) != Some(&Tok::Punct(',')) {
                return Ok(columns);
            }
            self.i += 1;
        }
    }

    /// `FROM enduser [alias]`.
    fn enduser_table(&mut self) -> Result<(), String> {
        if !self.kw(0, "from") {
            return Err(SYNTAX.into());
        }
        self.i += 1;
        match self.at(0) {
            Some(Tok::Word(t)) if t.eq_ignore_ascii_case("enduser") => self.i += 1,
            Some(Tok::Word(t)) => {
                return Err(format!("The specified table ({t}) is not in the database."));
            }
            _ => return Err(SYNTAX.into()),
        }
        // Optional table alias.
        if let Some(Tok::Word(w)) = self.at(0)
            && !["where", "order"].iter().any(|k| w.eq_ignore_ascii_case(k))
        {
            self.i += 1;
        }
        Ok(())
    }

    /// `cond [AND cond]…` after `WHERE`.
    fn conditions(&mut self) -> Result<Vec<Cond>, String> {
        let mut conds = Vec::new();
        loop {
            let Some(Tok::Word(c)) = self.at(0) else {
                return Err(SYNTAX.into());
            };
            let col = column(c)?;
            self.i += 1;
            if self.at(0) == Some(&Tok::Punct('=')) {
                let Some(Tok::Str(v)) = self.at(1) else {
                    return Err(SYNTAX.into());
                };
                conds.push(Cond::Eq(col, v.clone()));
                self.i += 2;
            } else if self.kw(0, "is") && self.kw(1, "null") {
                conds.push(Cond::IsNull(col, true));
                self.i += 2;
            } else if self.kw(0, "is") && self.kw(1, "not") && self.kw(2, "null") {
                conds.push(Cond::IsNull(col, false));
                self.i += 3;
            } else {
                return Err(SYNTAX.into());
            }
            if !self.kw(0, "and") {
                return Ok(conds);
            }
            self.i += 1;
        }
    }
}
