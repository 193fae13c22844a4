//! Binary delta engine: `diff(old, new)` and a streaming, memory-bounded `apply`.
