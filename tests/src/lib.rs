//! End-to-end harness for zonewarden.
