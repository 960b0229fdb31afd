//! `tcpstate-draw`: the TCP state diagram and sequence charts, generated from the machine.
#![deny(missing_docs)]
