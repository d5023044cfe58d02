//! The flightrec terminal UI. Not built yet: it arrives with the TUI issue, over the replayer's
//! `History`. The crate exists now so the workspace has the shape ARCHITECTURE.md describes.
