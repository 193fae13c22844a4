//! Enrolling a group of simulated devices with the server, several at a time: the group's one-time
//! tokens come a thousand to a request, then each device makes its own enrollment request and
//! database commit; one at a time, 10,000 devices took seven minutes before a rollout could start.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ed25519_dalek::VerifyingKey;
use halyard_node::config::MqttSettings;
use halyard_ota::root::TrustedRoot;

use crate::control::Control;
use crate::device::{DeviceSpec, SimDevice};
use crate::fleet;
use crate::harness::{Group, HarnessError, mqtt_settings, server_key};

/// Enrollments in flight at once.
const WORKERS: usize = 8;

/// An enrolled device, ready to boot.
#[derive(Debug)]
pub(crate) struct Enrolled {
    pub device: SimDevice,
    pub mqtt: MqttSettings,
    pub server_key: VerifyingKey,
}

/// What every device of a group shares.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    pub control: &'a Control,
    pub group: &'a Group,
    pub dir: &'a Path,
    pub image_len: usize,
    pub factory_version: &'a str,
    pub root: TrustedRoot,
    pub healthy: SocketAddr,
    pub refused: SocketAddr,
}

/// Creates and enrolls every device of the plan's group; the result keeps the group's order.
pub(crate) fn group(plan: &Plan) -> Result<Vec<Enrolled>, HarnessError> {
    let n = plan.group.count;
    let tokens = &plan.control.enroll_tokens(Some(&plan.group.site), n)?;
    let workers = WORKERS.min(n).max(1);
    let mut done: Vec<(usize, Result<Enrolled, HarnessError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    (w..n)
                        .step_by(workers)
                        .map(|i| (i, one(plan, i, &tokens[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    if done.len() != n {
        return Err(HarnessError::Server("an enrollment worker panicked".into()));
    }
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

fn one(plan: &Plan, i: usize, token: &str) -> Result<Enrolled, HarnessError> {
    let group = plan.group;
    let name = format!("{}-{}-{}", group.site, group.hardware_class, i);
    let spec = DeviceSpec {
        name: name.clone(),
        hardware_class: group.hardware_class.clone(),
        data_dir: plan.dir.join("devices").join(&name),
        slot_size: plan.image_len + 4096,
        factory_version: plan.factory_version.to_owned(),
        factory_image: fleet::image(plan.factory_version, plan.image_len),
        root: plan.root.clone(),
        behaviors: group.behaviors.clone(),
        stability_window: Duration::from_secs(2),
        health_interval: Duration::from_millis(250),
        healthy_addr: plan.healthy,
        unhealthy_addr: plan.refused,
    };
    let device = SimDevice::new(spec)?;
    let (_, server_pem, broker) =
        plan.control
            .enroll_device(token, &device.public_key_b64(), &group.hardware_class)?;
    Ok(Enrolled {
        device,
        mqtt: mqtt_settings(&broker)?,
        server_key: server_key(&server_pem)?,
    })
}
