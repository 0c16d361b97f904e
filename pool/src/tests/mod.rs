//! Race verification models (filled in by the race-verification work).
