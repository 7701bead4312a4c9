//! The client: send lines, print their echoes.
