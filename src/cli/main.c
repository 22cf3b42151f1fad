#include <stdio.h>
#include <string.h>

#include "agent/agent.h"
#include "basic/log.h"
#include "cli.h"
#include "config.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: skiff <command> [options]\n"
               "\n"
               "commands:\n"
               "  server    run the control plane (ECS API) with the embedded store\n"
               "  agent     run a node agent that runs tasks as containers\n"
               "  version   print the version\n"
               "\n"
               "Run 'skiff <command> --help' for a command's options.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    const char *lvl = getenv("SKIFF_LOG");
    sk_log_level level = SK_LOG_INFO;
    if (lvl && strcmp(lvl, "debug") == 0)
        level = SK_LOG_DEBUG;
    else if (lvl && strcmp(lvl, "warn") == 0)
        level = SK_LOG_WARN;
    if (strcmp(cmd, "server") == 0) {
        sk_log_setup("skiff-server", level);
        return skiff_server_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "agent") == 0) {
        sk_log_setup("skiff-agent", level);
        return agent_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "image-pull") == 0) {
        sk_log_setup("skiff-image-pull", level);
        return agent_image_pull_main(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("skiff %s\n", SKIFF_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "skiff: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
