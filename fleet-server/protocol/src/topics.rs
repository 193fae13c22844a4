//! MQTT topics. Everything for one device lives under `halyard/v1/devices/{device_id}/`, so a broker ACL
//! of `halyard/v1/devices/%c/#` (client id = device id) confines a device to its own topics.

use crate::ids::DeviceId;

/// The prefix every Halyard topic starts with.
pub const ROOT: &str = "halyard/v1/devices";

/// The four per-device topics and who publishes on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// server → device, retained, QoS 1: the release the device should run.
    Desired,
    /// device → server, retained, QoS 1: the device's current state.
    Report,
    /// device → server, QoS 1: one message per state transition.
    Events,
    /// device → server (and broker, as last will), retained: online / offline.
    Presence,
}

impl Topic {
    pub const ALL: [Topic; 4] = [Topic::Desired, Topic::Report, Topic::Events, Topic::Presence];

    pub fn name(self) -> &'static str {
        match self {
            Topic::Desired => "desired",
            Topic::Report => "report",
            Topic::Events => "events",
            Topic::Presence => "presence",
        }
    }

    /// The full topic for one device.
    pub fn for_device(self, device: &DeviceId) -> String {
        format!("{ROOT}/{device}/{}", self.name())
    }

    /// The wildcard the server subscribes to for this topic across the fleet.
    pub fn fleet_filter(self) -> String {
        format!("{ROOT}/+/{}", self.name())
    }

    /// Splits a concrete topic into (device, topic); `None` for anything that is not exactly ours.
    pub fn parse(topic: &str) -> Option<(DeviceId, Topic)> {
        let rest = topic.strip_prefix(ROOT)?.strip_prefix('/')?;
        let (device, name) = rest.split_once('/')?;
        let kind = Topic::ALL.into_iter().find(|t| t.name() == name)?;
        Some((DeviceId::new(device).ok()?, kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip_and_reject_foreign_ones() {
        let id = DeviceId::new("pos-7").unwrap();
        for t in Topic::ALL {
            assert_eq!(Topic::parse(&t.for_device(&id)), Some((id.clone(), t)));
        }
        assert_eq!(Topic::Report.fleet_filter(), "halyard/v1/devices/+/report");
        for bad in [
            "halyard/v1/devices/pos-7/other",
            "halyard/v1/devices/POS/report",
            "halyard/v2/devices/pos-7/report",
            "halyard/v1/devices/pos-7/report/extra",
            "halyard/v1/devices//report",
        ] {
            assert_eq!(Topic::parse(bad), None, "{bad}");
        }
    }
}
