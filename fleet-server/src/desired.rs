//! Turning engine actions into signed `desired` envelopes (and quarantines), with the per-device
//! sequence numbers the agents' replay guards require.

use std::collections::HashMap;

use halyard_protocol::{
    Artifact, DeltaOffer, Desired, DesiredAction, DeviceId, Envelope, Sha256, Slot, Window,
};
use halyard_rollout::{Action, DeviceView};

use crate::app::App;
use crate::engine::{DeviceMap, EngineError};
use crate::model::{Delta, DesiredRecord, Device, Release};
use crate::store::{ChangeMark, StoreError};
use crate::views;

/// The engine's view of the fleet, kept between passes under the engine lock so a pass reads only
/// what changed: the devices as of the last change-feed read ([`crate::store::Store::devices_changed`])
/// and the last desired sequence number per device. Emptied after a failed pass, so the next one reads
/// everything again (a stale sequence number shows up as a refused commit: the store never lowers one).
#[derive(Debug, Default)]
pub struct FleetView {
    devices: DeviceMap,
    /// The engine's view of each device in `devices`, rebuilt only when the device changes.
    views: HashMap<DeviceId, DeviceView>,
    mark: Option<ChangeMark>,
    seqs: Option<HashMap<DeviceId, u64>>,
    /// Rollouts as the last pass read or wrote them, by id (used again while their revision holds).
    pub(crate) rollouts: HashMap<String, crate::engine::Loaded>,
    /// The lease epoch the view was kept under: another leader may have issued desired states
    /// between two terms of this one.
    pub(crate) epoch: Option<u64>,
    /// Rollouts the last step left unchanged, with until when only new inputs can change them
    /// ([`halyard_rollout::quiet_until`]); see [`FleetView::is_quiet`].
    pub(crate) quiet: HashMap<String, Quiet>,
    /// The sites and releases the last pass saw: a change to either is a new input.
    inputs: Option<Inputs>,
}

/// A rollout a step left unchanged at revision `rev`: stepping it again changes nothing before
/// `until` (unix seconds; `None`: never) while no input changes.
#[derive(Debug, Clone, Copy)]
pub struct Quiet {
    pub rev: i64,
    pub until: Option<i64>,
}

/// What a pass reads besides devices and rollouts, compared between passes.
#[derive(Debug, PartialEq)]
struct Inputs {
    sites: Vec<halyard_rollout::Site>,
    /// (version, product, bundle digest) of every release.
    releases: Vec<(String, String, String)>,
}

impl FleetView {
    /// An empty view for lease term `epoch`.
    pub fn for_term(epoch: u64) -> Self {
        Self {
            epoch: Some(epoch),
            ..Self::default()
        }
    }

    /// Reads the sequence numbers again on the next load (another replica may have issued some: an
    /// operator command runs on whichever replica the operator reached).
    pub fn forget_seqs(&mut self) {
        self.seqs = None;
    }

    /// Whether stepping rollout `id` at revision `rev` can be skipped at `now`: the last step left it
    /// unchanged at that revision, no device, site or release changed since (any load that sees a
    /// change, a pass's or an operator command's, forgets every quiet rollout), and `now` is before
    /// the time it could change by itself.
    pub fn is_quiet(&self, id: &str, rev: i64, now: i64) -> bool {
        (self.quiet.get(id)).is_some_and(|q| q.rev == rev && q.until.is_none_or(|u| now < u))
    }
}

/// What the engine needs besides the rollout itself, loaded once per pass.
#[derive(Debug, Default)]
pub struct Context {
    pub devices: DeviceMap,
    /// [`views::device`] of each of `devices`.
    pub views: HashMap<DeviceId, DeviceView>,
    pub sites: Vec<halyard_rollout::Site>,
    pub releases: HashMap<String, Release>,
    pub deltas: HashMap<String, Vec<Delta>>,
    /// The last desired sequence number issued per device.
    pub seqs: HashMap<DeviceId, u64>,
    mark: Option<ChangeMark>,
    /// No device, site or release changed since the load before this one.
    unchanged: bool,
    inputs: Option<Inputs>,
}

impl Context {
    /// Brings `view` up to date (taking it: it is only put back by [`Context::keep`], after a pass
    /// that succeeded) and loads the rest.
    pub async fn load(app: &App, view: &mut FleetView) -> Result<Self, StoreError> {
        let mut devices = std::mem::take(&mut view.devices);
        let mut views = std::mem::take(&mut view.views);
        let (mark, seqs) = (view.mark.take(), view.seqs.take());
        let before = view.inputs.take();
        let ctx = app
            .db(move |s| {
                let releases: HashMap<_, _> = s
                    .releases()?
                    .into_iter()
                    .map(|r| (r.version.clone(), r))
                    .collect();
                let mut deltas = HashMap::new();
                for v in releases.keys() {
                    deltas.insert(v.clone(), s.deltas(v)?);
                }
                let had_mark = mark.is_some();
                let (changed, mark) = s.devices_changed(mark)?;
                let devices_unchanged = had_mark && changed.is_empty();
                for d in changed {
                    views.insert(d.id.clone(), views::device(&d));
                    devices.insert(d.id.clone(), d);
                }
                let seqs = match seqs {
                    Some(seqs) => seqs,
                    None => s.desired_seqs()?.into_iter().collect(),
                };
                let sites: Vec<_> = s.sites()?.iter().map(views::site).collect();
                let mut listed: Vec<_> = (releases.values())
                    .map(|r| (r.version.clone(), r.product.clone(), r.bundle_sha256.clone()))
                    .collect();
                listed.sort();
                let inputs = Inputs {
                    sites: sites.clone(),
                    releases: listed,
                };
                Ok(Self {
                    devices,
                    views,
                    sites,
                    releases,
                    deltas,
                    seqs,
                    mark: Some(mark),
                    unchanged: devices_unchanged && before.as_ref() == Some(&inputs),
                    inputs: Some(inputs),
                })
            })
            .await?;
        if !ctx.unchanged {
            // The change is consumed here: whatever a step left quiet must be stepped again.
            view.quiet.clear();
        }
        Ok(ctx)
    }

    /// Hands the fleet view back for the next pass.
    pub fn keep(self, view: &mut FleetView) {
        view.devices = self.devices;
        view.views = self.views;
        view.mark = self.mark;
        view.seqs = Some(self.seqs);
        view.inputs = self.inputs;
    }
}

/// What one action amounts to.
#[derive(Debug)]
pub enum Effect {
    Desired(DesiredRecord),
    Quarantine {
        version: String,
        hw_class: String,
        reason: String,
    },
    Nothing,
}

/// Maps one engine action to its effect.
pub fn for_action(
    app: &App,
    ctx: &mut Context,
    rollout: &str,
    action: &Action,
) -> Result<Effect, EngineError> {
    let (device, what) = match action {
        Action::Install {
            device,
            version,
            window,
        } => {
            let window = window.map(|w| Window {
                not_before: w.start.as_second().max(0) as u64,
                not_after: w.end.as_second().max(0) as u64,
            });
            (device, install(app, ctx, version, window))
        }
        Action::Revert { device, to_version } => (device, revert(app, ctx, device, to_version)),
        Action::Cancel { device } => (device, Some(DesiredAction::Stay)),
        Action::Quarantine {
            version,
            hw_class,
            reason,
        } => {
            return Ok(Effect::Quarantine {
                version: version.clone(),
                hw_class: hw_class.clone(),
                reason: reason.clone(),
            });
        }
    };
    let Ok(device) = DeviceId::new(device.as_str()) else {
        return Ok(Effect::Nothing);
    };
    let Some(action) = what else {
        tracing::warn!(device = %device, rollout, "no way to carry out the engine's action (release or image unknown)");
        return Ok(Effect::Nothing);
    };
    seal(app, ctx, rollout, device, action).map(Effect::Desired)
}

/// Signs a desired action for a device with its next sequence number.
pub fn seal(
    app: &App,
    ctx: &mut Context,
    rollout: &str,
    device: DeviceId,
    action: DesiredAction,
) -> Result<DesiredRecord, EngineError> {
    let seq = ctx.seqs.get(&device).copied().unwrap_or(0) + 1;
    let desired = Desired {
        rollout: Some(rollout.to_owned()),
        action,
    };
    let env =
        Envelope::seal(&desired, &device, seq, &app.key).map_err(|e| EngineError::Seal(e.to_string()))?;
    ctx.seqs.insert(device.clone(), seq);
    let envelope = String::from_utf8(env.encode()).map_err(|e| EngineError::Seal(e.to_string()))?;
    Ok(DesiredRecord {
        device,
        seq,
        rollout: Some(rollout.to_owned()),
        envelope,
    })
}

fn install(app: &App, ctx: &Context, version: &str, window: Option<Window>) -> Option<DesiredAction> {
    let release = ctx.releases.get(version)?;
    let bundle = Artifact {
        url: app.artifact_url(&release.bundle_sha256),
        sha256: Sha256::parse(&release.bundle_sha256).ok()?,
        size: release.bundle_size,
    };
    let deltas = ctx
        .deltas
        .get(version)
        .into_iter()
        .flatten()
        .filter_map(|d| {
            let artifact = Artifact {
                url: app.artifact_url(&d.artifact_sha256),
                sha256: Sha256::parse(&d.artifact_sha256).ok()?,
                size: d.size,
            };
            Some(DeltaOffer {
                source_sha256: Sha256::parse(&d.source_sha256).ok()?,
                artifact,
            })
        })
        .collect();
    Some(DesiredAction::Install {
        version: version.to_owned(),
        bundle,
        deltas,
        window,
        deadline: None,
    })
}

/// Switch back to the other slot when it holds `version`; otherwise reinstall it.
fn revert(app: &App, ctx: &Context, device: &str, version: &str) -> Option<DesiredAction> {
    let d = DeviceId::new(device).ok().and_then(|id| ctx.devices.get(&id));
    match d.and_then(|d| slot_image(d, version)) {
        Some(image_sha256) => Some(DesiredAction::Switch {
            version: version.to_owned(),
            image_sha256,
        }),
        None => install(app, ctx, version, None),
    }
}

/// The image hash of the slot that holds `version`, from the device's last report.
pub fn slot_image(d: &Device, version: &str) -> Option<Sha256> {
    let r = d.report.as_ref()?;
    [(Slot::A, &r.slot_a), (Slot::B, &r.slot_b)]
        .into_iter()
        .find(|(_, s)| s.version.as_deref() == Some(version))
        .and_then(|(_, s)| s.image_sha256)
}
