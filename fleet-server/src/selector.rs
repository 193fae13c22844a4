//! Device selectors: `hw=pos-x86,site=store-042,tag=beta,version=1.2.0,state=committed,id=dev-...`.
//! Terms are ANDed; a key may repeat to mean OR (`site=a,site=b`). An empty selector matches all.

use crate::model::Device;

/// A selector that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("selector term {term:?}: {why}")]
pub struct SelectorError {
    pub term: String,
    pub why: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Hw,
    Site,
    Tag,
    Version,
    State,
    Id,
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    terms: Vec<(Key, String)>,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for term in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let err = |why| SelectorError {
                term: term.to_owned(),
                why,
            };
            let (k, v) = term.split_once('=').ok_or_else(|| err("expected key=value"))?;
            let key = match k.trim() {
                "hw" | "hardware_class" => Key::Hw,
                "site" => Key::Site,
                "tag" => Key::Tag,
                "version" => Key::Version,
                "state" => Key::State,
                "id" => Key::Id,
                _ => return Err(err("unknown key (hw, site, tag, version, state, id)")),
            };
            let v = v.trim();
            if v.is_empty() {
                return Err(err("empty value"));
            }
            terms.push((key, v.to_owned()));
        }
        Ok(Self { terms })
    }

    /// True when every key present has at least one matching value.
    pub fn matches(&self, d: &Device) -> bool {
        [Key::Hw, Key::Site, Key::Tag, Key::Version, Key::State, Key::Id]
            .into_iter()
            .all(|key| {
                let mut values = self.terms.iter().filter(|(k, _)| *k == key).peekable();
                values.peek().is_none() || values.any(|(_, v)| term_matches(key, v, d))
            })
    }
}

fn term_matches(key: Key, value: &str, d: &Device) -> bool {
    match key {
        Key::Hw => d.hardware_class == value,
        Key::Site => d.site.as_deref() == Some(value),
        Key::Tag => d.tags.iter().any(|t| t == value),
        Key::Version => active_version(d).as_deref() == Some(value),
        Key::State => state_name(d) == value,
        Key::Id => d.id.as_str() == value,
    }
}

/// The version the device runs now, from its last report.
pub fn active_version(d: &Device) -> Option<String> {
    let r = d.report.as_ref()?;
    let slot = match r.active {
        halyard_protocol::Slot::A => &r.slot_a,
        halyard_protocol::Slot::B => &r.slot_b,
    };
    slot.version.clone()
}

/// The agent state's name (`idle`, `downloading`, ..., `rolled_back`, `failed`), or `unknown`.
pub fn state_name(d: &Device) -> &'static str {
    use halyard_protocol::AgentState as S;
    match d.report.as_ref().map(|r| &r.state) {
        None => "unknown",
        Some(S::Idle) => "idle",
        Some(S::Downloading { .. }) => "downloading",
        Some(S::Installing { .. }) => "installing",
        Some(S::Staged { .. }) => "staged",
        Some(S::Rebooting { .. }) => "rebooting",
        Some(S::Trial { .. }) => "trial",
        Some(S::Committed { .. }) => "committed",
        Some(S::RolledBack { .. }) => "rolled_back",
        Some(S::Failed { .. }) => "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halyard_protocol::DeviceId;

    fn dev(hw: &str, site: Option<&str>, tags: &[&str]) -> Device {
        Device {
            id: DeviceId::from_public_key(&[1; 32]),
            public_key: String::new(),
            product: "p".into(),
            hardware_class: hw.into(),
            site: site.map(Into::into),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            enrolled_at: 0,
            last_seen: 0,
            online: true,
            report: None,
        }
    }

    #[test]
    fn selectors_and_or_and_refuse_nonsense() {
        let d = dev("pos-x86", Some("store-042"), &["beta"]);
        let table = [
            ("", true),
            ("hw=pos-x86", true),
            ("hw=pos-arm", false),
            ("hw=pos-x86,site=store-042,tag=beta", true),
            ("hw=pos-x86,tag=gamma", false),
            ("site=store-001,site=store-042", true),
            ("state=unknown", true),
            ("version=1.0.0", false),
        ];
        for (sel, want) in table {
            assert_eq!(Selector::parse(sel).map(|s| s.matches(&d)), Ok(want), "{sel}");
        }
        for bad in ["hw", "colour=red", "hw="] {
            assert!(Selector::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
