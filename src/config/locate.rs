//! Maps a path inside the config (`cameras[1].zones[0].polygon`) back to its line and column.

use std::path::{Path, PathBuf};

use toml_edit::{Document, Item, Value};

use super::ConfigError;

/// One step of a path into the config tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    /// A table key.
    Key(&'static str),
    /// An array element.
    Index(usize),
}

/// Finds positions in one config file.
pub(super) struct Locator<'a> {
    file: PathBuf,
    text: &'a str,
    doc: Option<Document<&'a str>>,
}

impl<'a> Locator<'a> {
    pub(super) fn new(file: &Path, text: &'a str) -> Self {
        Self {
            file: file.to_path_buf(),
            text,
            doc: Document::parse(text).ok(),
        }
    }

    /// An error at a byte offset.
    pub(super) fn error_at(&self, offset: usize, message: String) -> ConfigError {
        let (line, column) = line_col(self.text, offset);
        ConfigError {
            file: self.file.clone(),
            line,
            column,
            message,
        }
    }

    /// An error at the value a path names, or at the nearest enclosing item that exists.
    pub(super) fn error_at_path(&self, path: &[PathSeg], message: String) -> ConfigError {
        let offset = self
            .doc
            .as_ref()
            .and_then(|d| span_of(d.as_item(), path))
            .unwrap_or(0);
        let message = format!("{}: {message}", render_path(path));
        self.error_at(offset, message)
    }

    /// The config path (`cameras[0].zones[1].dwell_seconds`) of the deepest key, value or table
    /// header at a byte offset, for errors that come with a position but no path (type errors
    /// and unknown fields found while deserializing).
    pub(super) fn path_at(&self, offset: usize) -> Option<String> {
        let doc = self.doc.as_ref()?;
        let mut best: Option<Vec<OwnedSeg>> = None;
        let root = doc.as_item().as_table()?;
        find_in_table(root, offset, &mut Vec::new(), &mut best);
        best.filter(|p| !p.is_empty()).map(|p| render_owned(&p))
    }
}

/// A path step with an owned key (keys of an unknown field are not `'static`).
#[derive(Debug, Clone)]
enum OwnedSeg {
    Key(String),
    Index(usize),
}

fn render_owned(path: &[OwnedSeg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            OwnedSeg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            OwnedSeg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn covers(span: Option<std::ops::Range<usize>>, offset: usize) -> bool {
    span.is_some_and(|s| s.start <= offset && offset < s.end.max(s.start + 1))
}

/// Keeps `path` as the answer if it is deeper than the best so far.
fn consider(path: &[OwnedSeg], best: &mut Option<Vec<OwnedSeg>>) {
    if best.as_ref().is_none_or(|b| path.len() > b.len()) {
        *best = Some(path.to_vec());
    }
}

fn find_in_table(
    t: &toml_edit::Table,
    offset: usize,
    path: &mut Vec<OwnedSeg>,
    best: &mut Option<Vec<OwnedSeg>>,
) {
    if covers(t.span(), offset) {
        consider(path, best);
    }
    for (k, item) in t.iter() {
        path.push(OwnedSeg::Key(k.to_string()));
        if covers(t.key(k).and_then(|k| k.span()), offset) {
            consider(path, best);
        }
        find_in_item(item, offset, path, best);
        path.pop();
    }
}

fn find_in_item(
    item: &Item,
    offset: usize,
    path: &mut Vec<OwnedSeg>,
    best: &mut Option<Vec<OwnedSeg>>,
) {
    match item {
        Item::Table(t) => find_in_table(t, offset, path, best),
        Item::ArrayOfTables(a) => {
            for (i, t) in a.iter().enumerate() {
                path.push(OwnedSeg::Index(i));
                find_in_table(t, offset, path, best);
                path.pop();
            }
        }
        Item::Value(v) => find_in_value(v, offset, path, best),
        Item::None => {}
    }
}

fn find_in_value(
    v: &Value,
    offset: usize,
    path: &mut Vec<OwnedSeg>,
    best: &mut Option<Vec<OwnedSeg>>,
) {
    if !covers(v.span(), offset) {
        return;
    }
    consider(path, best);
    match v {
        Value::Array(a) => {
            for (i, e) in a.iter().enumerate() {
                path.push(OwnedSeg::Index(i));
                find_in_value(e, offset, path, best);
                path.pop();
            }
        }
        Value::InlineTable(t) => {
            for (k, e) in t.iter() {
                path.push(OwnedSeg::Key(k.to_string()));
                if covers(t.key(k).and_then(|k| k.span()), offset) {
                    consider(path, best);
                }
                find_in_value(e, offset, path, best);
                path.pop();
            }
        }
        _ => {}
    }
}

/// `cameras[1].zones[0].polygon`
pub fn render_path(path: &[PathSeg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            PathSeg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Start offset of the deepest existing item along `path`.
fn span_of(item: &Item, path: &[PathSeg]) -> Option<usize> {
    let here = item.span().map(|s| s.start);
    let Some((first, rest)) = path.split_first() else {
        return here;
    };
    let child: Option<ChildRef<'_>> = match (item, first) {
        (Item::Table(t), PathSeg::Key(k)) => t.get(k).map(ChildRef::Item),
        (Item::ArrayOfTables(a), PathSeg::Index(i)) => a.get(*i).map(ChildRef::Table),
        (Item::Value(v), seg) => value_child(v, seg).map(ChildRef::Value),
        _ => None,
    };
    let deeper = match child {
        Some(ChildRef::Item(i)) => span_of(i, rest),
        Some(ChildRef::Table(t)) => {
            // A table inside an array of tables: descend through it as an item.
            let first_key = rest.first();
            match first_key {
                Some(PathSeg::Key(k)) => match t.get(k) {
                    Some(i) => span_of(i, &rest[1..]),
                    None => t.span().map(|s| s.start),
                },
                _ => t.span().map(|s| s.start),
            }
        }
        Some(ChildRef::Value(v)) => span_of_value(v, rest),
        None => None,
    };
    deeper.or(here)
}

enum ChildRef<'a> {
    Item(&'a Item),
    Table(&'a toml_edit::Table),
    Value(&'a Value),
}

fn value_child<'a>(v: &'a Value, seg: &PathSeg) -> Option<&'a Value> {
    match (v, seg) {
        (Value::Array(a), PathSeg::Index(i)) => a.get(*i),
        (Value::InlineTable(t), PathSeg::Key(k)) => t.get(k),
        _ => None,
    }
}

fn span_of_value(v: &Value, path: &[PathSeg]) -> Option<usize> {
    let here = v.span().map(|s| s.start);
    match path.split_first() {
        None => here,
        Some((first, rest)) => value_child(v, first)
            .and_then(|c| span_of_value(c, rest))
            .or(here),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_values() {
        let text = "[mqtt]\nurl = \"x\"\n\n[[cameras]]\nid = \"a\"\n\n[[cameras]]\nid = \"b\"\n  [[cameras.zones]]\n  id = \"z\"\n  polygon = [[0.1, 0.2], [2.0, 0.3]]\n";
        let loc = Locator::new(Path::new("f.toml"), text);
        let e = loc.error_at_path(
            &[
                PathSeg::Key("cameras"),
                PathSeg::Index(1),
                PathSeg::Key("zones"),
                PathSeg::Index(0),
                PathSeg::Key("polygon"),
                PathSeg::Index(1),
            ],
            "outside".into(),
        );
        assert_eq!((e.line, e.column), (11, 26));
        assert!(e.message.starts_with("cameras[1].zones[0].polygon[1]: "));
        let e = loc.error_at_path(
            &[
                PathSeg::Key("cameras"),
                PathSeg::Index(1),
                PathSeg::Key("id"),
            ],
            "dup".into(),
        );
        assert_eq!((e.line, e.column), (8, 6));
    }
}
