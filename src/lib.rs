//! talvault
