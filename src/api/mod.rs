//! The flagger.app/v1beta1 API types (pure data, no I/O).
