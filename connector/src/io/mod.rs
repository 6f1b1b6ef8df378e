//! Drivers: the only code that touches sockets, clocks and tasks.
//!
//! - [`net`]: the [`net::Net`] backend trait with turmoil and tokio implementations.

pub mod net;
