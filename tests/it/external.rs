//! External evaluation (SPEC §11): written by the external-tests helper.
