//! [`EnvVars`]: an ordered list of bootloader variables, the common currency of every env format.

/// Variables in stored order. `set` replaces a value in place (keeping its position, as
/// `grub-editenv` does) or appends; formats that sort (U-Boot) sort when they encode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvVars {
    entries: Vec<(String, String)>,
}

impl EnvVars {
    /// No variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Set `key` to `value` in place, or append it. Returns whether anything changed.
    pub fn set(&mut self, key: &str, value: &str) -> bool {
        match self.entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) if v == value => false,
            Some((_, v)) => {
                *v = value.to_owned();
                true
            }
            None => {
                self.entries.push((key.to_owned(), value.to_owned()));
                true
            }
        }
    }

    /// Remove `key`; returns whether it was present.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(k, _)| k != key);
        self.entries.len() != before
    }

    /// Iterate in stored order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The same variables sorted by name (byte order), as U-Boot stores them.
    pub fn sorted(&self) -> Self {
        let mut entries = self.entries.clone();
        entries.sort();
        Self { entries }
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for EnvVars {
    /// Later duplicates replace earlier values (in place).
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut vars = Self::new();
        for (k, v) in iter {
            vars.set(&k.into(), &v.into());
        }
        vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_in_place_and_appends() {
        let mut v: EnvVars = [("b", "1"), ("a", "2")].into_iter().collect();
        assert!(v.set("b", "3"));
        assert!(!v.set("b", "3"));
        assert!(v.set("c", "4"));
        let order: Vec<_> = v.iter().collect();
        assert_eq!(order, [("b", "3"), ("a", "2"), ("c", "4")]);
        assert!(v.remove("a"));
        assert!(!v.remove("a"));
        assert_eq!(v.sorted().iter().map(|(k, _)| k).collect::<Vec<_>>(), ["b", "c"]);
    }
}
