"""tagteller's built-in domains, each a plugin module loaded through the ``tagteller`` entry-point
group exactly like a third-party plugin. Installed as the ``tagteller_plugins`` package."""
