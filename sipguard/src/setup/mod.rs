//! A desired state applied whole: the settings a command line or a configuration file gives,
//! list files, and the attach that loads, configures and links the filter all or nothing.

pub mod attach;
pub mod configfile;
pub mod import;
pub mod settings;
