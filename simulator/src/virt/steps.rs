//! The device steps of one instant, spread over the machine's cores. Devices share nothing a step
//! writes (each has its own slots, journal, keys, link draws and clock), so the steps of distinct
//! devices may run in any order; the world applies their results in event order afterwards, which
//! keeps the event log the same for any number of threads.

use halyard_node::transport::codec::Publication;

use super::device::{Downtime, Step, VDevice};

/// Below this many steps in a group, a second thread costs more than it saves.
const PARALLEL_MIN: usize = 16;

/// What a device is asked to do in a step.
#[derive(Debug)]
pub(super) enum Job {
    Boot,
    Tick,
    Deliver {
        topic: String,
        payload: Vec<u8>,
    },
    /// Back online: publish the full report again.
    Announce,
}

/// What one step produced, with the presence messages around it already sealed by the device.
#[derive(Debug)]
pub(super) struct Done {
    pub step: Step,
    /// The offline presence the broker publishes for the device after its connection died.
    pub will: Option<Publication>,
}

/// Why a device is down when its image hangs (no agent, so no goodbye and no will either).
const HANG: &str = "image hangs; watchdog reset";

/// Runs `job` on `dev`. A connection that opens (boot, reconnect) sends presence online first; a
/// clean reboot says goodbye itself; any other death leaves the broker its last will.
pub(super) fn run(dev: &mut VDevice, job: Job, broker_up: bool, down: Downtime) -> Done {
    let connects = matches!(job, Job::Boot | Job::Announce);
    let mut step = match job {
        Job::Boot => dev.boot(down),
        Job::Tick => dev.tick(down),
        Job::Deliver { topic, payload } => dev.deliver(&topic, &payload, down),
        Job::Announce => dev.announce(),
    };
    let path_up = broker_up && dev.link.is_up();
    if connects
        && path_up
        && dev.is_up()
        && let Some(p) = dev.presence(true)
    {
        step.out.insert(0, p);
    }
    let mut will = None;
    if let Some(why) = step.down_for.and(step.down_why) {
        if why == "reboot" && path_up {
            step.out.extend(dev.presence(false));
        } else if path_up && why != HANG {
            will = dev.presence(false);
        }
    }
    Done { step, will }
}

/// Whether a group of `jobs` steps runs on several threads (`threads` available).
pub(super) fn parallel(threads: usize, jobs: usize) -> bool {
    threads > 1 && jobs >= PARALLEL_MIN
}

/// Runs every job (at most one per device) on up to `threads` threads; results in the jobs' order.
pub(super) fn run_all(
    jobs: Vec<(usize, Job)>,
    devices: &mut [VDevice],
    threads: usize,
    broker_up: bool,
    down: Downtime,
) -> Vec<Done> {
    if !parallel(threads, jobs.len()) {
        return jobs
            .into_iter()
            .map(|(i, job)| run(&mut devices[i], job, broker_up, down))
            .collect();
    }
    let n = jobs.len();
    let mut work = borrow_each(jobs, devices);
    let per = n.div_ceil(threads);
    let mut out: Vec<Option<Done>> = (0..n).map(|_| None).collect();
    std::thread::scope(|s| {
        let mut chunks = Vec::new();
        while !work.is_empty() {
            let rest = work.split_off(work.len().saturating_sub(per));
            chunks.push(rest);
        }
        let mine = chunks.pop().unwrap_or_default();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| s.spawn(move || run_chunk(chunk, broker_up, down)))
            .collect();
        for (pos, done) in run_chunk(mine, broker_up, down) {
            out[pos] = Some(done);
        }
        for h in handles {
            match h.join() {
                Ok(results) => results.into_iter().for_each(|(pos, done)| out[pos] = Some(done)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    out.into_iter().flatten().collect()
}

type Work<'a> = Vec<(usize, &'a mut VDevice, Job)>;

fn run_chunk(chunk: Work<'_>, broker_up: bool, down: Downtime) -> Vec<(usize, Done)> {
    chunk
        .into_iter()
        .map(|(pos, dev, job)| (pos, run(dev, job, broker_up, down)))
        .collect()
}

/// Pairs each job with a mutable borrow of its device (device indices must be distinct).
fn borrow_each(jobs: Vec<(usize, Job)>, devices: &mut [VDevice]) -> Work<'_> {
    let mut jobs: Vec<(usize, usize, Job)> = jobs
        .into_iter()
        .enumerate()
        .map(|(pos, (i, job))| (i, pos, job))
        .collect();
    jobs.sort_by_key(|(i, _, _)| *i);
    let mut out = Vec::with_capacity(jobs.len());
    let mut rest = devices;
    let mut offset = 0;
    for (i, pos, job) in jobs {
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(i - offset);
        let Some((dev, tail)) = tail.split_first_mut() else {
            break;
        };
        out.push((pos, dev, job));
        rest = tail;
        offset = i + 1;
    }
    out
}

/// Threads for device steps: `HALYARD_SIM_THREADS`, else one per core. Results do not depend on it.
pub fn threads() -> usize {
    std::env::var("HALYARD_SIM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1)
}
