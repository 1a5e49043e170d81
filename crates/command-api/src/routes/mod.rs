pub mod auth;
pub mod cards;
pub mod health;
pub mod imports;
pub mod provider_credentials;
pub mod runs;
pub mod test_cases;
pub mod workspaces;
