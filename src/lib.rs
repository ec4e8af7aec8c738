//! kizashi: early warning for Japanese cashless-payment incidents.
//!
//! Data flows one way: crawl → text → classify → pipeline → store → search → aggregate → web.
pub mod aggregate;
pub mod alerting;
pub mod app;
pub mod auth;
pub mod classify;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crawl;
pub mod demo;
pub mod dictionaries;
pub mod domain;
pub mod evaluate;
pub mod jobs;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod search;
pub mod spikes;
pub mod status;
pub mod store;
pub mod text;
pub mod web;
