//! The edit plan `diff` builds before encoding: a list of copy / add / insert operations that
//! rebuild `new` front to back.

/// One operation; the target position is implicit (operations are applied in order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Copy `len` source bytes from `old` verbatim.
    Copy { old: usize, len: usize },
    /// Copy `len` source bytes from `old`, adding the diff stream's bytes (mod 256).
    Add { old: usize, len: usize },
    /// Take `len` bytes from the extra stream.
    Insert { len: usize },
}

impl Op {
    /// Number of target bytes this operation produces.
    pub(crate) fn len(&self) -> usize {
        match *self {
            Op::Copy { len, .. } | Op::Add { len, .. } | Op::Insert { len } => len,
        }
    }
}

/// An append-only list of operations that merges neighbours where it can.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) ops: Vec<Op>,
}

impl Plan {
    /// Appends `op`, dropping empty operations and merging it into the previous one when both
    /// are the same kind and continue each other in the source.
    pub(crate) fn push(&mut self, op: Op) {
        if op.len() == 0 {
            return;
        }
        if let Some(last) = self.ops.last_mut() {
            match (last, op) {
                (Op::Copy { old: a, len: la }, Op::Copy { old: b, len: lb })
                | (Op::Add { old: a, len: la }, Op::Add { old: b, len: lb })
                    if *a + *la == b =>
                {
                    *la += lb;
                    return;
                }
                (Op::Insert { len: la }, Op::Insert { len: lb }) => {
                    *la += lb;
                    return;
                }
                _ => {}
            }
        }
        self.ops.push(op);
    }

    /// Total target bytes of the plan.
    pub(crate) fn target_len(&self) -> usize {
        self.ops.iter().map(Op::len).sum()
    }
}
