//! The scrubber's integration tests, one binary: a module per theme. Snapshots are named by
//! module path (`tests__scrub_snapshots__*.snap`).

mod events;
mod scrub_event;
mod scrub_snapshots;
