/* The simulated runtime (--runtime=simulated, never the default): containers
 * reach RUNNING without images or processes, stop when told (exit 143), and
 * report health HEALTHY when they define a check. Registration, the poll
 * channel, state reporting and every control-plane decision stay real, so
 * thousands of instances can exercise the scheduler on one machine. An image
 * name containing "does-not-exist" fails to pull. */
#include <string.h>

#include "agent-internal.h"
#include "basic/alloc.h"
#include "basic/log.h"
#include "shared/jsonutil.h"

static void on_pulled(ev_timer *t, void *userdata)
{
    agent_container *c = userdata;
    ev_timer_free(t);
    c->stop_timer = NULL;
    agent_task_image_ready(
            c,
            strstr(c->image, "does-not-exist")
                    ? "pull access denied, repository does not exist or may require authorization (simulated)"
                    : NULL);
}

void agent_sim_pull(agent_container *c)
{
    /* Deferred so that callers never see state change under their feet. */
    ev_timer *t = ev_timer_new(c->task->agent->loop, on_pulled, c);
    c->stop_timer = t;
    ev_timer_arm_in(t, 0);
}

void agent_sim_start(agent_container *c)
{
    c->state = CS_RUNNING;
    c->ever_started = true;
    c->started_at = now_monotonic();
    c->monitor_pid = 0;
    if (js_obj(c->def, "healthCheck")) {
        free(c->health);
        c->health = xstrdup("HEALTHY");
    }
}

void agent_sim_stop(agent_container *c)
{
    (void) c;
}
