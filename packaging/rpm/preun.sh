# confab %preun: on erase ($1 = 0) stop and disable the service.
if [ "$1" -eq 0 ]; then
    systemctl disable --now confab.service >/dev/null 2>&1 || :
fi
exit 0
