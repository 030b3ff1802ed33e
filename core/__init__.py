"""The ground floor: helpers every app may use and that import no app (README "Architecture")."""
