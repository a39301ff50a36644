# confab %postun: after an upgrade ($1 >= 1) restart the running service on
# the new binary. On erase, RPM keeps a modified /etc/confab/confab.toml as
# .rpmsave and /var/lib/confab stays (RPM has no purge; remove it by hand).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart confab.service >/dev/null 2>&1 || :
    fi
fi
exit 0
