"""Communities (社群运营): groups, tiers, screening, routing, rules and group metrics."""
