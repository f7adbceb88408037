int custos_server_placeholder_(void); int custos_server_placeholder_(void) { return 0; }
