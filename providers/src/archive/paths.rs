//! Entry names and link targets, checked against the entries before them.
//!
//! The archive's namespace is kept as a tree of nodes (one per path component ever named), so
//! memory grows with the bytes of names read, never with depth squared. Rules, all lexical, made
//! sound by refusing anything that would let a lexical answer differ from what a filesystem does:
//! - a path never goes through an earlier non-directory (a symlink, a file);
//! - nothing replaces a directory that earlier entries are in, and names appear once (directories
//!   may repeat);
//! - a confined symlink target resolves from the link's directory to a path inside the archive,
//!   never through another symlink, and no later symlink may appear where an earlier target went
//!   through (the `a/b/..` trick where `b` becomes a link afterwards);
//! - a hardlink names an earlier regular file.

use std::collections::HashMap;

use super::{ArchivePolicy, EntryKind, SymlinkTargets};

/// Linux's NAME_MAX.
const COMPONENT_MAX: usize = 255;
const ROOT: usize = 0;

/// Normalises an entry name: relative, UTF-8, no `..`, `.` and empty components dropped.
/// `Ok(None)` is the archive root (`.`, `./`). The error completes "entry NAME ...".
pub(crate) fn normalize(name: &[u8], max_len: usize) -> Result<Option<String>, String> {
    if name.is_empty() {
        return Err("has an empty name".into());
    }
    if name.len() > max_len {
        return Err(format!("has a name longer than {max_len} bytes"));
    }
    let text = std::str::from_utf8(name).map_err(|_| "has a name that is not UTF-8".to_owned())?;
    if text.starts_with('/') {
        return Err("is an absolute path".into());
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("contains \"..\"".into()),
            p if p.len() > COMPONENT_MAX => {
                return Err(format!("has a path component longer than {COMPONENT_MAX} bytes"));
            }
            p if p.contains('\0') => return Err("contains a NUL byte".into()),
            p => parts.push(p),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Hardlink,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Dir => "directory",
            Kind::File => "file",
            Kind::Symlink => "symlink",
            Kind::Hardlink => "hardlink",
        }
    }
}

struct Node {
    parent: usize,
    name: Box<str>,
    /// `None`: only named as a parent or inside a link target so far.
    kind: Option<Kind>,
    /// An entry has been admitted below this node.
    has_entries: bool,
    /// A symlink target went through this node to something below it.
    traversed: bool,
}

pub(crate) struct Tree {
    nodes: Vec<Node>,
    children: HashMap<(usize, Box<str>), usize>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            nodes: vec![Node {
                parent: ROOT,
                name: "".into(),
                kind: Some(Kind::Dir),
                has_entries: false,
                traversed: false,
            }],
            children: HashMap::new(),
        }
    }
}

pub(crate) enum Admission {
    Ok,
    /// Completes "KIND NAME ...".
    Refused(String),
}

impl Tree {
    fn child(&mut self, parent: usize, name: &str) -> usize {
        let key = (parent, Box::<str>::from(name));
        if let Some(id) = self.children.get(&key) {
            return *id;
        }
        let id = self.nodes.len();
        self.nodes.push(Node {
            parent,
            name: key.1.clone(),
            kind: None,
            has_entries: false,
            traversed: false,
        });
        self.children.insert(key, id);
        id
    }

    fn lookup(&self, path: &str) -> Option<usize> {
        let mut node = ROOT;
        for part in path.split('/') {
            node = *self.children.get(&(node, Box::<str>::from(part)))?;
        }
        Some(node)
    }

    fn path_of(&self, mut id: usize) -> String {
        let mut parts = Vec::new();
        while id != ROOT {
            parts.push(&*self.nodes[id].name);
            id = self.nodes[id].parent;
        }
        parts.reverse();
        parts.join("/")
    }

    fn shown(&self, id: usize) -> String {
        super::quote(self.path_of(id).as_bytes())
    }

    /// Admits `path` (normalised, not the root) as `kind`, filling in what the checks learnt:
    /// a confined symlink's resolved path, a hardlink's normalised target.
    pub(crate) fn admit(&mut self, path: &str, kind: &mut EntryKind, policy: &ArchivePolicy) -> Admission {
        let parts: Vec<&str> = path.split('/').collect();
        let Some((last_name, parent_names)) = parts.split_last() else {
            return Admission::Refused("has an empty name".into());
        };
        let mut parents = Vec::with_capacity(parent_names.len());
        let mut node = ROOT;
        for name in parent_names {
            node = self.child(node, name);
            match self.nodes[node].kind {
                None | Some(Kind::Dir) => {}
                Some(k) => {
                    return Admission::Refused(format!("goes through the {} {}", k.noun(), self.shown(node)));
                }
            }
            parents.push(node);
        }
        let parent = node;
        let last = self.child(parent, last_name);
        let new_kind = match kind {
            EntryKind::File => Kind::File,
            EntryKind::Dir => Kind::Dir,
            EntryKind::Symlink { .. } => Kind::Symlink,
            EntryKind::Hardlink { .. } => Kind::Hardlink,
        };
        if new_kind != Kind::Dir && self.nodes[last].has_entries {
            return Admission::Refused("replaces a directory that earlier entries are in".into());
        }
        if let Some(old) = self.nodes[last].kind {
            if old == Kind::Dir && new_kind == Kind::Dir {
                return Admission::Ok;
            }
            return Admission::Refused("appears twice in the archive".into());
        }
        match kind {
            EntryKind::Symlink { target, resolved } if policy.symlinks == SymlinkTargets::Confined => {
                match self.resolve(parent, target) {
                    Ok(id) => *resolved = Some(self.path_of(id)),
                    Err(why) => return Admission::Refused(why),
                }
            }
            EntryKind::Symlink { target, .. } => {
                if target.contains('\0') {
                    return Admission::Refused("has a target with a NUL byte".into());
                }
            }
            EntryKind::Hardlink { target } => {
                let shown = super::quote(target.as_bytes());
                let normal = match normalize(target.as_bytes(), policy.limits.max_path_len) {
                    Ok(Some(t)) => t,
                    Ok(None) => return Admission::Refused("points to the archive root".into()),
                    Err(_) if target.starts_with('/') || target.split('/').any(|p| p == "..") => {
                        return Admission::Refused(format!("points outside the archive ({shown})"));
                    }
                    Err(why) => return Admission::Refused(format!("has a target that {why}")),
                };
                match self.lookup(&normal).map(|id| self.nodes[id].kind) {
                    Some(Some(Kind::File)) => *target = normal,
                    _ => {
                        return Admission::Refused(format!(
                            "points to {shown}, which is not an earlier regular file of the archive"
                        ));
                    }
                }
            }
            EntryKind::File | EntryKind::Dir => {}
        }
        if new_kind == Kind::Symlink && self.nodes[last].traversed {
            return Admission::Refused("replaces a directory that an earlier symlink's target goes through".into());
        }
        for id in parents {
            self.nodes[id].has_entries = true;
        }
        self.nodes[ROOT].has_entries = true;
        self.nodes[last].kind = Some(new_kind);
        Admission::Ok
    }

    /// Resolves a symlink target from the directory `from`; the node it lands on.
    fn resolve(&mut self, from: usize, target: &str) -> Result<usize, String> {
        let shown = super::quote(target.as_bytes());
        if target.starts_with('/') {
            return Err(format!("points to the absolute path {shown}, outside the archive"));
        }
        let mut stack = Vec::new();
        let mut id = from;
        while id != ROOT {
            stack.push(id);
            id = self.nodes[id].parent;
        }
        stack.push(ROOT);
        stack.reverse();
        let parts: Vec<&str> = target.split('/').filter(|p| !p.is_empty()).collect();
        for (i, part) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            match *part {
                "." => {}
                ".." => {
                    if stack.len() == 1 {
                        return Err(format!("points outside the archive ({shown})"));
                    }
                    stack.pop();
                }
                name => {
                    if name.len() > COMPONENT_MAX || name.contains('\0') {
                        return Err(format!("has an invalid target {shown}"));
                    }
                    let top = stack.last().copied().unwrap_or(ROOT);
                    let next = self.child(top, name);
                    if !last {
                        match self.nodes[next].kind {
                            None | Some(Kind::Dir) => {}
                            Some(k) => {
                                return Err(format!(
                                    "has a target that goes through the {} {}",
                                    k.noun(),
                                    self.shown(next)
                                ));
                            }
                        }
                        self.nodes[next].traversed = true;
                    }
                    stack.push(next);
                }
            }
        }
        Ok(stack.last().copied().unwrap_or(ROOT))
    }
}
