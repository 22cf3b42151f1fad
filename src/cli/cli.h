/* Subcommand entry points of the skiff binary. */
#pragma once

int skiff_server_main(int argc, char **argv);
char *skiff_default_data_dir(void);
