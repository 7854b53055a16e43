//! The tests' deterministic random numbers (xorshift): generated inputs that reproduce
//! from their seed, with no crate for it.

/// Steps `state` (which must not be zero) and returns a number below `n`.
pub fn below(state: &mut u64, n: usize) -> usize {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state % n as u64) as usize
}
