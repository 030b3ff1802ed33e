"""The ground floor: helpers every app may use and that import no app (DESIGN §1)."""
