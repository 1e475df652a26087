//! workspace-hack package, managed by hakari: unifies dependency features across the workspace
//! so that building any subset of crates reuses the same compiled dependencies.
