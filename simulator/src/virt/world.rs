//! The event loop of virtual time. Events are kept in a map ordered by (time, sequence number); all
//! events of one instant are handled in that order, then the messages that reached the server are
//! ingested as one batch and the engine runs if due. The broker is simulated here: it keeps each
//! device's retained `desired`, delivers when the device is connected, and holds device reports while
//! the server is down (as a real broker retains them).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use halyard_protocol::Topic;

use super::clock::VirtualTime;
use super::device::{Downtime, VDevice};
use super::log::EventLog;
use super::server::{VServer, VServerError};
use super::steps::{self, Done, Job};
use crate::faults::FaultSpec;

/// Something that happens at an instant.
#[derive(Debug)]
pub(super) enum Ev {
    Boot(usize),
    Tick(usize),
    Desired(usize),
    Reconnect(usize),
    ToServer(usize, String, Vec<u8>),
    /// The broker publishes a device's last will (its connection died).
    Will(usize, String, Vec<u8>),
    Engine,
    Fault(usize, bool),
}

/// What the run did, for the report and the benchmark.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Stats {
    pub device_steps: u64,
    pub messages: u64,
    pub refused: u64,
    pub engine_steps: u64,
    pub desired_sent: u64,
    /// Groups of device steps that ran on several threads (never in the event log).
    pub parallel_groups: u64,
}

/// Timing of the simulated world.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub down: Downtime,
    pub latency: i64,
    pub engine_tick: i64,
    pub poll: i64,
}

/// The whole simulated world.
#[derive(Debug)]
pub struct World {
    pub time: VirtualTime,
    pub start: i64,
    pub devices: Vec<VDevice>,
    pub(super) server: Option<VServer>,
    pub(super) server_dir: PathBuf,
    events: BTreeMap<(i64, u64), Ev>,
    order: u64,
    pub(super) retained: Vec<Option<Vec<u8>>>,
    index_of: HashMap<String, usize>,
    busy_until: Vec<i64>,
    tick_at: Vec<Option<i64>>,
    /// Retained device messages (report, presence) the broker keeps while no server is subscribed.
    pub(super) held_reports: BTreeMap<(usize, String), Vec<u8>>,
    /// Messages a disconnected device's MQTT client keeps until it is connected again.
    pending: Vec<Vec<(String, Vec<u8>)>>,
    /// The earliest time a device's next message can arrive (messages keep their order).
    send_free: Vec<i64>,
    pub(super) broker_up: bool,
    engine_at: Option<i64>,
    /// When the engine last ran: wake-ups from reports are coalesced to one pass per `engine_tick`,
    /// as the real server coalesces them to one pass per tick.
    pub(super) engine_ran: i64,
    pub(super) faults: Vec<FaultSpec>,
    pub(super) seen_decisions: HashMap<String, usize>,
    /// Rollout ids and statuses as of the last engine pass (only passes and operator calls change
    /// them; see [`World::refresh_rollouts`]).
    pub(super) rollouts: Vec<halyard_server::store::RolloutRev>,
    pub(super) timing: Timing,
    pub(super) seed: u64,
    /// Threads the device steps of one instant run on.
    threads: usize,
    pub log: EventLog,
    pub stats: Stats,
    /// Wall time by part of the loop (not in the results: they must not depend on the machine).
    pub wall: WallTimes,
}

/// Where the wall time of a run went, for `HALYARD_SIM_PROFILE=1`.
#[derive(Debug, Default, Clone, Copy)]
pub struct WallTimes {
    /// Server, releases and enrolled devices.
    pub setup: std::time::Duration,
    pub device_steps: std::time::Duration,
    pub ingest: std::time::Duration,
    pub engine: std::time::Duration,
}

impl World {
    pub fn new(server: VServer, server_dir: PathBuf, time: VirtualTime, timing: Timing, seed: u64) -> Self {
        Self {
            start: time.get(),
            time,
            devices: Vec::new(),
            server: Some(server),
            server_dir,
            events: BTreeMap::new(),
            order: 0,
            retained: Vec::new(),
            index_of: HashMap::new(),
            busy_until: Vec::new(),
            tick_at: Vec::new(),
            held_reports: BTreeMap::new(),
            pending: Vec::new(),
            send_free: Vec::new(),
            broker_up: true,
            engine_at: None,
            engine_ran: i64::MIN / 2,
            faults: Vec::new(),
            seen_decisions: HashMap::new(),
            rollouts: Vec::new(),
            timing,
            seed,
            threads: steps::threads(),
            log: EventLog::default(),
            stats: Stats::default(),
            wall: WallTimes::default(),
        }
    }

    /// The server, unless it is down (crashed and not restarted yet).
    pub fn server(&self) -> Option<&VServer> {
        self.server.as_ref()
    }

    pub fn now(&self) -> i64 {
        self.time.get()
    }

    pub(super) fn since(&self, t: i64) -> i64 {
        t - self.start
    }

    pub(super) fn at(&mut self, t: i64, ev: Ev) {
        self.order += 1;
        self.events.insert((t, self.order), ev);
    }

    /// Adds a device; it is powered on `after` seconds from now.
    pub fn add(&mut self, device: VDevice, after: i64) {
        let i = self.devices.len();
        self.index_of.insert(device.id.as_str().to_owned(), i);
        self.devices.push(device);
        self.retained.push(None);
        self.busy_until.push(0);
        self.tick_at.push(None);
        self.pending.push(Vec::new());
        self.send_free.push(0);
        self.at(self.now() + after, Ev::Boot(i));
    }

    /// Schedules fault `spec` to start at `t` (and end `spec.lasts` later).
    pub fn fault(&mut self, spec: FaultSpec, t: i64) {
        let k = self.faults.len();
        let end = t + spec.lasts.secs();
        let lasting = spec.lasts.0 > 0;
        self.faults.push(spec);
        self.at(t, Ev::Fault(k, true));
        if lasting {
            self.at(end, Ev::Fault(k, false));
        }
    }

    /// Wakes the engine at `t` unless it runs earlier anyway.
    pub fn wake_engine(&mut self, t: i64) {
        if self.engine_at.is_none_or(|e| e > t) {
            self.engine_at = Some(t);
            self.at(t, Ev::Engine);
        }
    }

    /// Whether any device is updating or about to act.
    pub fn busy(&self) -> bool {
        self.devices.iter().any(|d| d.is_busy() || !d.is_up())
    }

    /// Waits until the server has stored every message that reached it so far.
    pub fn settle(&mut self) -> Result<(), VServerError> {
        if let Some(server) = &self.server {
            let started = std::time::Instant::now();
            self.stats.refused += server.settle()? as u64;
            self.wall.ingest += started.elapsed();
        }
        Ok(())
    }

    /// Runs events until the clock passes `deadline` or `done` says so (checked after each instant).
    /// On return the server has stored every message that reached it.
    pub fn run_until(&mut self, deadline: i64, done: impl FnMut(&World) -> bool) -> Result<(), VServerError> {
        self.refresh_rollouts()?;
        self.run_events(deadline, done)?;
        self.settle()
    }

    fn run_events(
        &mut self,
        deadline: i64,
        mut done: impl FnMut(&World) -> bool,
    ) -> Result<(), VServerError> {
        if done(self) {
            return Ok(());
        }
        while let Some((&(t, _), _)) = self.events.first_key_value() {
            if t > deadline {
                break;
            }
            self.time.set(t);
            let mut batch = Vec::new();
            while let Some(entry) = self.events.first_entry() {
                if entry.key().0 != t {
                    break;
                }
                batch.push(entry.remove());
            }
            self.instant(t, batch)?;
            if done(self) {
                return Ok(());
            }
        }
        self.time.set(deadline.max(self.now()));
        Ok(())
    }

    fn instant(&mut self, t: i64, batch: Vec<Ev>) -> Result<(), VServerError> {
        let mut inbound = Vec::new();
        let mut engine = false;
        let mut group = Group::default();
        for ev in batch {
            match ev {
                Ev::Boot(i) => self.prepare(&mut group, i, t, Act::Boot),
                Ev::Tick(i) => {
                    self.flush_if_in(&mut group, i, t);
                    self.tick_at[i] = None;
                    self.prepare(&mut group, i, t, Act::Tick);
                }
                Ev::Desired(i) => self.prepare(&mut group, i, t, Act::Desired),
                Ev::Reconnect(i) => self.prepare(&mut group, i, t, Act::Reconnect),
                Ev::ToServer(i, topic, payload) => {
                    self.flush_if_in(&mut group, i, t);
                    self.uplink(i, topic, payload, &mut inbound);
                }
                Ev::Will(i, topic, payload) => {
                    self.flush_if_in(&mut group, i, t);
                    self.broker_hands_over(i, topic, payload, &mut inbound);
                }
                Ev::Engine => {
                    if self.engine_at == Some(t) {
                        self.engine_at = None;
                    }
                    engine = true;
                }
                Ev::Fault(k, starts) => {
                    self.flush(&mut group, t);
                    self.settle()?;
                    self.apply_fault(k, starts, t)?;
                }
            }
        }
        self.flush(&mut group, t);
        if !inbound.is_empty()
            && let Some(server) = &self.server
        {
            self.stats.messages += inbound.len() as u64;
            // Stored while the next instants' device steps run; the engine waits for it.
            server.send(inbound, t)?;
            self.wake_engine((t + 1).max(self.engine_ran + self.timing.engine_tick));
        }
        if engine && self.server.is_some() {
            self.settle()?;
            let started = std::time::Instant::now();
            self.engine_step(t)?;
            self.wall.engine += started.elapsed();
        }
        Ok(())
    }
}

/// What a device is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Boot,
    Tick,
    Desired,
    Reconnect,
}

/// Device steps of one instant waiting to run together: at most one per device, so they touch
/// disjoint state and may run on several threads.
#[derive(Debug, Default)]
struct Group {
    jobs: Vec<(usize, Job)>,
    acts: Vec<Act>,
    members: HashSet<usize>,
}

impl World {
    pub(super) fn connected(&self, i: usize) -> bool {
        self.broker_up && self.devices[i].link.is_up() && self.devices[i].is_up()
    }

    /// Runs the group first when device `i` is in it (its next event must see that step's result).
    fn flush_if_in(&mut self, group: &mut Group, i: usize, t: i64) {
        if group.members.contains(&i) {
            self.flush(group, t);
        }
    }

    /// The world's half of a device event before the device acts: defer it while the device is busy,
    /// drop it when it does not apply, else queue the device's step in `group`.
    fn prepare(&mut self, group: &mut Group, i: usize, t: i64, act: Act) {
        self.flush_if_in(group, i, t);
        if t < self.busy_until[i] {
            let ev = match act {
                Act::Boot => Ev::Boot(i),
                Act::Tick => return self.schedule_tick(i, self.busy_until[i]),
                Act::Desired => Ev::Desired(i),
                Act::Reconnect => Ev::Reconnect(i),
            };
            return self.at(self.busy_until[i], ev);
        }
        let job = match act {
            Act::Boot => {
                // A new process: whatever the old client kept unsent is gone.
                self.pending[i].clear();
                Job::Boot
            }
            Act::Tick if self.devices[i].is_up() => Job::Tick,
            Act::Desired if self.connected(i) => match self.retained[i].clone() {
                Some(payload) => Job::Deliver {
                    topic: Topic::Desired.for_device(&self.devices[i].id),
                    payload,
                },
                None => return,
            },
            Act::Reconnect if self.connected(i) => {
                for (topic, payload) in std::mem::take(&mut self.pending[i]) {
                    let at = self.send_time(i, t);
                    self.at(at, Ev::ToServer(i, topic, payload));
                }
                Job::Announce
            }
            _ => return,
        };
        group.members.insert(i);
        group.jobs.push((i, job));
        group.acts.push(act);
    }

    /// Runs the queued device steps, then applies their results in the order the events came.
    fn flush(&mut self, group: &mut Group, t: i64) {
        if group.jobs.is_empty() {
            return;
        }
        group.members.clear();
        let jobs = std::mem::take(&mut group.jobs);
        let acts = std::mem::take(&mut group.acts);
        self.stats.parallel_groups += u64::from(steps::parallel(self.threads, jobs.len()));
        let indices: Vec<usize> = jobs.iter().map(|(i, _)| *i).collect();
        let (threads, up, down) = (self.threads, self.broker_up, self.timing.down);
        let started = std::time::Instant::now();
        let results = steps::run_all(jobs, &mut self.devices, threads, up, down);
        self.wall.device_steps += started.elapsed();
        for ((i, act), done) in indices.into_iter().zip(acts).zip(results) {
            self.stats.device_steps += 1;
            if act == Act::Reconnect && self.retained[i].is_some() {
                self.at(t + done.step.spent + self.timing.latency, Ev::Desired(i));
            }
            self.after_step(i, t, done, act == Act::Boot);
        }
    }

    /// The connection died without a goodbye: the broker publishes the will after 1.5 keep-alives.
    pub(super) fn will(&mut self, i: usize, t: i64) {
        if let Some(p) = self.devices[i].presence(false) {
            self.at(t + 45, Ev::Will(i, p.topic, p.payload));
        }
    }

    fn after_step(&mut self, i: usize, t: i64, done: Done, booted: bool) {
        let Done { step, will } = done;
        let end = t + step.spent;
        self.busy_until[i] = end;
        let name = self.devices[i].name.clone();
        for (from, to, reason) in &step.transitions {
            let why = reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            self.log
                .line(self.since(end), "device", &name, &format!("{from} -> {to}{why}"));
        }
        if let Some(p) = will {
            self.at(end + 45, Ev::Will(i, p.topic, p.payload));
        }
        for p in step.out {
            let at = self.send_time(i, end);
            self.at(at, Ev::ToServer(i, p.topic, p.payload));
        }
        if let Some(d) = step.down_for {
            self.log
                .line(self.since(end), "down", &name, step.down_why.unwrap_or("down"));
            self.at(end + d, Ev::Boot(i));
            return;
        }
        if booted && self.connected(i) && self.retained[i].is_some() {
            self.at(end + self.timing.latency, Ev::Desired(i));
        }
        if self.devices[i].is_busy() {
            self.schedule_tick(i, end + self.timing.poll);
        }
    }

    /// When a message sent at `t` reaches the broker: after the latency, after every QoS 1 resend a
    /// lossy link costs (20 s each), and never before the device's earlier messages (one TCP stream).
    fn send_time(&mut self, i: usize, t: i64) -> i64 {
        let mut at = t + self.timing.latency;
        for _ in 0..10 {
            if !self.devices[i].link.lose() {
                break;
            }
            at += 20;
        }
        let at = at.max(self.send_free[i]);
        self.send_free[i] = at;
        at
    }

    fn schedule_tick(&mut self, i: usize, t: i64) {
        if self.tick_at[i].is_none_or(|p| p > t) {
            self.tick_at[i] = Some(t);
            self.at(t, Ev::Tick(i));
        }
    }

    fn uplink(&mut self, i: usize, topic: String, payload: Vec<u8>, inbound: &mut Vec<(String, Vec<u8>)>) {
        let link = self.devices[i].link.clone();
        if !self.broker_up || !link.is_up() {
            // The client keeps it and publishes it once it is connected again.
            return self.pending[i].push((topic, payload));
        }
        self.broker_hands_over(i, topic, payload, inbound);
    }

    /// The broker hands a message to the server, or keeps it (retained topics) while none subscribes.
    fn broker_hands_over(
        &mut self,
        i: usize,
        topic: String,
        payload: Vec<u8>,
        inbound: &mut Vec<(String, Vec<u8>)>,
    ) {
        if !self.broker_up {
            return;
        }
        if self.server.is_none() {
            if topic.ends_with("/report") || topic.ends_with("/presence") {
                self.held_reports.insert((i, topic), payload);
            }
            return;
        }
        inbound.push((topic, payload));
    }

    /// Desired states the server published: retained, delivered to connected devices.
    pub(super) fn publish(&mut self, t: i64, messages: impl Iterator<Item = (String, Vec<u8>)>) {
        for (topic, payload) in messages {
            let Some(i) = Topic::parse(&topic).and_then(|(d, _)| self.index_of.get(d.as_str()).copied())
            else {
                continue;
            };
            self.stats.desired_sent += 1;
            self.retained[i] = Some(payload);
            if self.connected(i) {
                let lost = self.devices[i].link.lose();
                let delay = self.timing.latency + if lost { 20 } else { 0 };
                self.at(t + delay, Ev::Desired(i));
            }
        }
    }
}
